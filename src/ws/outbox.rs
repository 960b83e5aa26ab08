//! A connection's write side: its TCP socket and the bounded queue in front of it,
//! shared by the connection's session task and by every task that publishes to it.
//!
//! Whoever hands a frame to an idle connection writes it to the socket right away, from
//! its own task (one `writev`: the WebSocket header and the shared bytes). Fan-out to a
//! thousand members is then a thousand non-blocking writes in one loop, not a thousand
//! task wake-ups, each with its own channel, lock and socket wrapper to go through:
//! that hop was a third of the server's CPU per delivery (BENCHMARKS.md). Only when
//! the kernel's send buffer is full does anything wait: the rest stays here, the
//! session task is told, and it finishes the writing when the socket is writable
//! again. Frames that queue up meanwhile leave together, as one JSON array in one
//! WebSocket frame. One writer at a time (the `Writing` state), so frames never
//! interleave; the lock is never held across a system call.

use std::{
    collections::VecDeque,
    io::{self, IoSlice},
    sync::Arc,
};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::{net::TcpStream, sync::Notify};
use tungstenite::protocol::frame::{
    FrameHeader,
    coding::{Data, OpCode},
};

/// An encoded frame as queued for a connection: one pointer (8 bytes a slot instead of
/// `Bytes`' 32); the bytes are shared by every member of the room.
pub type Frame = Arc<Bytes>;

/// Bytes coalesced into one WebSocket frame at most.
pub const MAX_COALESCE_BYTES: usize = 60 * 1024;
/// Queued frames coalesced into one WebSocket frame at most (docs/PROTOCOL.md).
pub const MAX_COALESCE: usize = 256;

/// The server's keep-alive ping: FIN + opcode 9, empty payload.
pub const PING: &[u8] = &[0x89, 0x00];

enum Item {
    /// A JSON text frame (an object, or an array of objects).
    Frame(Frame),
    /// Bytes already framed (a pong or close frame from the WebSocket codec).
    Raw(Bytes),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Before the hello: frames wait, so the hello is the first thing written.
    Held,
    Idle,
    /// Someone is writing; what is queued meanwhile is theirs to write.
    Writing,
    /// The send buffer was full; the session writes when the socket is writable.
    Blocked,
    /// A write failed: nothing more is written.
    Failed,
}

struct Out {
    /// The next frame, when it is the only thing waiting: the common case (one frame
    /// to an idle socket) needs no queue, and an idle socket holds none.
    first: Option<Frame>,
    /// What waits after `first`, in order.
    queue: VecDeque<Item>,
    /// Encoded bytes a short write left; they go before anything queued.
    rest: Bytes,
    /// Payload bytes queued and not yet handed to the kernel.
    bytes: usize,
    state: State,
    /// The goodbye is queued: no more frames.
    sealed: bool,
}

impl Out {
    /// Frames (and raw frames) waiting.
    fn waiting(&self) -> usize {
        usize::from(self.first.is_some()) + self.queue.len()
    }

    /// Queues a frame after everything waiting.
    fn push(&mut self, frame: Frame) {
        if self.first.is_none() && self.queue.is_empty() {
            self.first = Some(frame);
        } else {
            self.queue.push_back(Item::Frame(frame));
        }
    }
}

/// What became of an offered frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    /// Written or queued.
    Taken,
    /// Over the frame or byte limit: a slow consumer.
    Full,
    /// The connection is closing; the frame was dropped.
    Closed,
    /// Writing to the socket failed: the connection is dead.
    Failed,
}

pub struct Outbox {
    tcp: TcpStream,
    out: Mutex<Out>,
    /// Told when bytes wait for the socket to become writable.
    pub blocked: Notify,
    max_frames: usize,
    max_bytes: usize,
}

impl Outbox {
    pub fn new(tcp: TcpStream, max_frames: usize, max_bytes: usize) -> Self {
        Outbox {
            tcp,
            out: Mutex::new(Out {
                first: None,
                queue: VecDeque::new(),
                rest: Bytes::new(),
                bytes: 0,
                state: State::Held,
                sealed: false,
            }),
            blocked: Notify::new(),
            max_frames: max_frames.max(1),
            max_bytes,
        }
    }

    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Queues a frame, and writes it now if nobody else is writing.
    pub fn offer(&self, frame: Frame) -> Offer {
        match self.enqueue(frame) {
            Ok(true) => self.write_queued(),
            Ok(false) => Offer::Taken,
            Err(o) => o,
        }
    }

    /// Queues a frame without writing. `Ok(true)`: the connection was idle and the
    /// caller now owns its writing, and must call [`Outbox::write_queued`] (soon: the
    /// frame waits until then). A fan-out queues to every member in order first and
    /// writes afterwards, spread over tasks; frames still leave in queue order.
    pub fn enqueue(&self, frame: Frame) -> Result<bool, Offer> {
        let mut o = self.out.lock();
        if o.state == State::Failed {
            return Err(Offer::Failed);
        }
        if o.sealed {
            return Err(Offer::Closed);
        }
        let len = frame.len();
        // One frame always fits, however large: the byte limit bounds a backlog.
        if o.waiting() >= self.max_frames || (o.bytes > 0 && o.bytes + len > self.max_bytes) {
            return Err(Offer::Full);
        }
        o.push(frame);
        o.bytes += len;
        Ok(self.claim(&mut o))
    }

    /// Queues the last frame (the goodbye) past the limits; nothing is taken after it.
    pub fn seal_with(&self, frame: Frame) -> Offer {
        let mut o = self.out.lock();
        if o.state == State::Failed {
            return Offer::Failed;
        }
        if o.sealed {
            return Offer::Closed;
        }
        o.sealed = true;
        o.bytes += frame.len();
        o.push(frame);
        self.kick(o)
    }

    /// Queues bytes that are already WebSocket frames (ping, pong, close).
    pub fn raw(&self, bytes: Bytes) -> Offer {
        let mut o = self.out.lock();
        if o.state == State::Failed {
            return Offer::Failed;
        }
        o.bytes += bytes.len();
        o.queue.push_back(Item::Raw(bytes));
        self.kick(o)
    }

    /// Puts the hello first, as a WebSocket frame of its own (docs/PROTOCOL.md §3.3:
    /// a client reads one `hello` object first, never an array), and lets the queue
    /// flow behind it.
    pub fn open(&self, hello: Frame) -> Offer {
        let mut o = self.out.lock();
        if o.state != State::Held {
            return Offer::Closed;
        }
        if o.first.is_none() && o.queue.is_empty() {
            o.bytes += hello.len();
            o.first = Some(hello);
        } else {
            // Frames wait already: they would be coalesced with the hello into one
            // array. Framed here, the hello is written alone, then the batch.
            if let Some(f) = o.first.take() {
                o.queue.push_front(Item::Frame(f));
            }
            let mut head = [0u8; 10];
            let mut framed = BytesMut::with_capacity(10 + hello.len());
            framed.extend_from_slice(header(hello.len(), &mut head));
            framed.extend_from_slice(&hello);
            o.bytes += framed.len();
            o.queue.push_front(Item::Raw(framed.freeze()));
        }
        o.state = State::Idle;
        self.kick(o)
    }

    /// Lets the queue flow with no hello first: the test-only echo route
    /// (`session::echo`), which speaks bare RFC 6455 and no chat protocol.
    pub fn open_bare(&self) -> Offer {
        let mut o = self.out.lock();
        if o.state != State::Held {
            return Offer::Closed;
        }
        o.state = State::Idle;
        self.kick(o)
    }

    /// After the socket turned writable: writes what the full send buffer held back.
    pub fn resume(&self) -> Offer {
        let mut o = self.out.lock();
        match o.state {
            State::Blocked => {
                o.state = State::Writing;
                drop(o);
                self.write_queued()
            }
            State::Failed => Offer::Failed,
            _ => Offer::Taken,
        }
    }

    /// Everything queued has been handed to the kernel.
    pub fn is_empty(&self) -> bool {
        let o = self.out.lock();
        o.first.is_none() && o.queue.is_empty() && o.rest.is_empty()
    }

    /// Whether bytes wait for the socket to become writable.
    pub fn is_blocked(&self) -> bool {
        self.out.lock().state == State::Blocked
    }

    /// Waits until everything queued has been handed to the kernel, as a goodbye must
    /// before the socket is shut: writes what a full send buffer held back as the
    /// socket drains, and waits out another task that holds the writing (a fan-out
    /// queues to every member first and writes afterwards, so an outbox can be
    /// `Writing` with nothing written yet). `false` when the connection failed.
    /// Before the hello nothing is ever written: returns at once.
    pub async fn flush(&self) -> bool {
        loop {
            let state = self.out.lock().state;
            match state {
                State::Idle | State::Held => return true,
                State::Failed => return false,
                State::Blocked => {
                    if self.tcp.writable().await.is_err() || self.resume() == Offer::Failed {
                        return false;
                    }
                }
                // The owner writes soon and leaves the state Idle, Blocked or Failed.
                // A millisecond's sleep, not a yield: the owner may be queued on the
                // other worker, and a yield loop would spin this one meanwhile.
                State::Writing => tokio::time::sleep(std::time::Duration::from_millis(1)).await,
            }
        }
    }

    fn kick(&self, mut o: parking_lot::MutexGuard<'_, Out>) -> Offer {
        if !self.claim(&mut o) {
            return Offer::Taken;
        }
        drop(o);
        self.write_queued()
    }

    /// Takes over the writing if nobody has it.
    fn claim(&self, o: &mut Out) -> bool {
        if o.state != State::Idle {
            return false;
        }
        o.state = State::Writing;
        true
    }

    /// Writes until the queue is empty or the socket's buffer is full. Only the task
    /// that moved the state to `Writing` calls this: the owner that
    /// [`Outbox::enqueue`] named, or this outbox itself.
    pub fn write_queued(&self) -> Offer {
        loop {
            let mut o = self.out.lock();
            let result = if !o.rest.is_empty() {
                let rest = std::mem::take(&mut o.rest);
                drop(o);
                self.write_bytes(rest)
            } else if o.queue.is_empty()
                && let Some(f) = o.first.take()
            {
                // The common case, one frame: header and shared bytes in one writev,
                // no copy.
                o.bytes = o.bytes.saturating_sub(f.len());
                drop(o);
                self.write_frame(&f)
            } else if o.queue.is_empty() {
                o.state = State::Idle;
                // A backlog's slots are given back: an idle socket holds no queue.
                if o.queue.capacity() > 0 {
                    o.queue = VecDeque::new();
                }
                return Offer::Taken;
            } else {
                if let Some(f) = o.first.take() {
                    o.queue.push_front(Item::Frame(f));
                }
                let wire = encode_batch(&mut o.queue);
                o.bytes = o.bytes.saturating_sub(wire.1);
                drop(o);
                self.write_bytes(wire.0)
            };
            match result {
                Ok(None) => continue,
                Ok(Some(rest)) => {
                    let mut o = self.out.lock();
                    o.rest = rest;
                    o.state = State::Blocked;
                    drop(o);
                    self.blocked.notify_one();
                    return Offer::Taken;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "websocket write failed");
                    let mut o = self.out.lock();
                    o.state = State::Failed;
                    o.first = None;
                    o.queue.clear();
                    o.rest = Bytes::new();
                    o.bytes = 0;
                    return Offer::Failed;
                }
            }
        }
    }

    /// Writes one text frame; returns the bytes a full send buffer did not take.
    fn write_frame(&self, payload: &Bytes) -> io::Result<Option<Bytes>> {
        crate::metrics::OUTBOX_WRITES.inc();
        let mut head = [0u8; 10];
        let h = header(payload.len(), &mut head);
        let total = h.len() + payload.len();
        let n = match self.tcp.try_write_vectored(&[IoSlice::new(h), IoSlice::new(payload)]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        if n == total {
            return Ok(None);
        }
        let mut rest = BytesMut::with_capacity(total - n);
        if n < h.len() {
            rest.extend_from_slice(&h[n..]);
            rest.extend_from_slice(payload);
        } else {
            rest.extend_from_slice(&payload[n - h.len()..]);
        }
        Ok(Some(rest.freeze()))
    }

    /// Writes encoded bytes; returns what a full send buffer did not take.
    fn write_bytes(&self, mut wire: Bytes) -> io::Result<Option<Bytes>> {
        crate::metrics::OUTBOX_WRITES.inc();
        while !wire.is_empty() {
            match self.tcp.try_write(&wire) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    let _ = wire.split_to(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Some(wire)),
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

/// A server-to-client text frame header (FIN, opcode 1, no mask) for `len` bytes,
/// encoded by tungstenite; unmasked, it is at most 10 bytes. `rtm-bench floor` frames
/// its writes with it too, so they are the server's bytes.
pub fn header(len: usize, buf: &mut [u8; 10]) -> &[u8] {
    let h = FrameHeader { opcode: OpCode::Data(Data::Text), ..FrameHeader::default() };
    let n = h.len(len as u64);
    // Cannot fail: the slice holds the longest unmasked header.
    let _ = h.format(len as u64, &mut &mut buf[..]);
    &buf[..n]
}

/// Takes queued items off the front, at most `MAX_COALESCE` of them and about
/// `MAX_COALESCE_BYTES`, and
/// encodes them: each run of JSON frames becomes one text frame holding one JSON array
/// (a queued array is spliced in, so clients only ever see one level); raw frames go
/// as they are, in order. Returns the wire bytes and the payload bytes taken.
fn encode_batch(queue: &mut VecDeque<Item>) -> (Bytes, usize) {
    let mut wire = BytesMut::new();
    let mut json = BytesMut::new();
    let mut taken = 0;
    let mut items = 0;
    let flush_json = |json: &mut BytesMut, wire: &mut BytesMut| {
        if json.is_empty() {
            return;
        }
        json.extend_from_slice(b"]");
        let mut head = [0u8; 10];
        wire.extend_from_slice(header(json.len(), &mut head));
        wire.extend_from_slice(json);
        json.clear();
    };
    while let Some(item) = queue.front() {
        let size = match item {
            Item::Frame(f) => f.len(),
            Item::Raw(b) => b.len(),
        };
        if items == MAX_COALESCE || (taken > 0 && wire.len() + json.len() + size > MAX_COALESCE_BYTES) {
            break;
        }
        let Some(item) = queue.pop_front() else { break };
        taken += size;
        items += 1;
        match item {
            Item::Raw(b) => {
                flush_json(&mut json, &mut wire);
                wire.extend_from_slice(&b);
            }
            Item::Frame(f) => {
                let body: &[u8] = match f.first() {
                    Some(b'[') => f.get(1..f.len().saturating_sub(1)).unwrap_or_default(),
                    _ => &f,
                };
                if body.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                json.extend_from_slice(if json.is_empty() { b"[" } else { b"," });
                json.extend_from_slice(body);
            }
        }
    }
    flush_json(&mut json, &mut wire);
    (wire.freeze(), taken)
}

/// For the fuzz target `outbox_coalesce` (fuzz/): queues `items` in order (a JSON
/// frame, or with `true` bytes already framed) and encodes them as `write_queued` does
/// when a backlog leaves, batch after batch until none is left. Returns each batch's
/// wire bytes and the payload bytes it took.
#[doc(hidden)]
pub fn coalesce_for_fuzzing(items: Vec<(bool, Bytes)>) -> Vec<(Bytes, usize)> {
    let mut queue: VecDeque<Item> =
        items.into_iter().map(|(raw, b)| if raw { Item::Raw(b) } else { Item::Frame(Arc::new(b)) }).collect();
    let mut batches = Vec::new();
    while !queue.is_empty() {
        batches.push(encode_batch(&mut queue));
    }
    batches
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tungstenite::{
        Message,
        protocol::{Role, WebSocketContext},
    };

    /// Reads every message out of `wire` as a client would.
    pub(crate) fn client_reads(wire: &[u8]) -> Vec<String> {
        struct Cursor<'a>(&'a [u8]);
        impl io::Read for Cursor<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                io::Read::read(&mut self.0, buf)
            }
        }
        impl io::Write for Cursor<'_> {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut ctx = WebSocketContext::new(Role::Client, None);
        let mut c = Cursor(wire);
        let mut out = Vec::new();
        loop {
            match ctx.read(&mut c) {
                Ok(Message::Text(t)) => out.push(t.as_str().to_string()),
                Ok(Message::Ping(_)) => out.push("ping".into()),
                Ok(other) => out.push(format!("{other:?}")),
                Err(_) => return out,
            }
        }
    }

    fn frames(texts: &[&str]) -> VecDeque<Item> {
        texts.iter().map(|t| Item::Frame(Arc::new(Bytes::copy_from_slice(t.as_bytes())))).collect()
    }

    #[test]
    fn headers_for_every_length_class() {
        for len in [0usize, 125, 126, 65_535, 65_536, 200_000] {
            let payload = Bytes::from(vec![b'x'; len]);
            let mut head = [0u8; 10];
            let mut wire = header(len, &mut head).to_vec();
            wire.extend_from_slice(&payload);
            let got = client_reads(&wire);
            assert_eq!(got.len(), 1, "len {len}");
            assert_eq!(got[0].len(), len);
        }
    }

    #[test]
    fn coalesces_queued_frames_into_one_array() {
        let mut q = frames(&[r#"{"a":1}"#, r#"{"b":2}"#]);
        let (wire, taken) = encode_batch(&mut q);
        assert!(q.is_empty());
        assert_eq!(taken, 14);
        assert_eq!(client_reads(&wire), [r#"[{"a":1},{"b":2}]"#]);
    }

    #[test]
    fn splices_queued_arrays_and_keeps_raw_frames_in_order() {
        let mut q = frames(&[r#"{"a":1}"#, r#"[{"b":2},{"c":3}]"#, "[]"]);
        q.push_back(Item::Raw(Bytes::from_static(PING)));
        q.extend(frames(&[r#"{"d":4}"#]));
        let (wire, _) = encode_batch(&mut q);
        assert_eq!(client_reads(&wire), [r#"[{"a":1},{"b":2},{"c":3}]"#, "ping", r#"[{"d":4}]"#]);
    }

    #[test]
    fn at_most_256_queued_frames_in_one_array() {
        let mut q = frames(&[r#"{"n":1}"#; 600]);
        let sizes: Vec<usize> = std::iter::from_fn(|| {
            (!q.is_empty()).then(|| {
                let (wire, _) = encode_batch(&mut q);
                let m = client_reads(&wire);
                assert_eq!(m.len(), 1);
                serde_json::from_str::<serde_json::Value>(&m[0]).unwrap().as_array().map_or(1, Vec::len)
            })
        })
        .collect();
        assert_eq!(sizes, [256, 256, 88]);
    }

    #[test]
    fn splits_a_large_backlog_into_bounded_frames() {
        let text = format!(r#"{{"t":"{}"}}"#, "x".repeat(1000));
        let mut q = frames(&vec![text.as_str(); 200]);
        let mut total = 0;
        let mut batches = 0;
        while !q.is_empty() {
            let (wire, _) = encode_batch(&mut q);
            batches += 1;
            for m in client_reads(&wire) {
                assert!(m.len() <= MAX_COALESCE_BYTES + 2);
                let v: serde_json::Value = serde_json::from_str(&m).unwrap();
                total += v.as_array().map_or(1, Vec::len);
            }
        }
        assert!(batches > 1);
        assert_eq!(total, 200, "every queued frame is sent exactly once");
    }

    /// A loopback pair: the server side wrapped in an outbox, the client side raw.
    async fn pair(max_frames: usize, max_bytes: usize) -> (Outbox, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        (Outbox::new(server, max_frames, max_bytes), client)
    }

    pub(crate) async fn read_all(client: &mut TcpStream) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut wire = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(Ok(n)) = tokio::time::timeout(std::time::Duration::from_millis(200), client.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            wire.extend_from_slice(&buf[..n]);
        }
        wire
    }

    #[tokio::test]
    async fn holds_frames_until_the_hello_then_writes_directly() {
        let (ob, mut client) = pair(8, 1 << 20).await;
        let f = |s: &'static str| Arc::new(Bytes::from_static(s.as_bytes()));
        assert_eq!(ob.offer(f(r#"{"n":1}"#)), Offer::Taken);
        assert!(!ob.is_empty(), "nothing leaves before the hello");
        assert_eq!(ob.open(f(r#"{"hello":1}"#)), Offer::Taken);
        assert!(ob.is_empty());
        assert_eq!(ob.offer(f(r#"{"n":2}"#)), Offer::Taken);
        assert!(ob.is_empty(), "an idle connection is written to at once");
        // The hello alone, then what waited for it, then the next frame.
        assert_eq!(client_reads(&read_all(&mut client).await), [r#"{"hello":1}"#, r#"[{"n":1}]"#, r#"{"n":2}"#]);
        assert_eq!(ob.seal_with(f(r#"{"bye":1}"#)), Offer::Taken);
        assert_eq!(ob.offer(f(r#"{"n":3}"#)), Offer::Closed);
    }

    /// The goodbye race of a stopping node: a fan-out had queued a frame to the
    /// connection and owned its writing, not yet written, when the session sealed its
    /// goodbye and checked only for a full send buffer. It shut the socket at once, the
    /// fan-out's write failed, and the client saw the socket end without `closing`.
    #[tokio::test]
    async fn flush_waits_for_a_writer_in_another_task() {
        let (ob, mut client) = pair(8, 1 << 20).await;
        let ob = Arc::new(ob);
        let f = |s: &'static str| Arc::new(Bytes::from_static(s.as_bytes()));
        assert_eq!(ob.open(f(r#"{"hello":1}"#)), Offer::Taken);
        // A fan-out queues and takes the writing; it writes later, from its own task.
        assert_eq!(ob.enqueue(f(r#"{"n":1}"#)), Ok(true));
        assert_eq!(ob.seal_with(f(r#"{"bye":1}"#)), Offer::Taken, "queued behind the fan-out's frame");
        assert!(!ob.is_blocked(), "what the old goodbye checked: it saw nothing left to wait for");
        let flushing = tokio::spawn({
            let ob = ob.clone();
            async move { ob.flush().await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!flushing.is_finished(), "two frames are still queued");
        assert!(!ob.is_empty());
        assert_eq!(ob.write_queued(), Offer::Taken);
        let flushed = tokio::time::timeout(std::time::Duration::from_secs(5), flushing).await;
        assert!(matches!(flushed, Ok(Ok(true))), "{flushed:?}");
        assert!(ob.is_empty());
        assert_eq!(client_reads(&read_all(&mut client).await), [r#"{"hello":1}"#, r#"[{"n":1},{"bye":1}]"#]);
    }

    #[tokio::test]
    async fn a_reader_that_stops_fills_the_outbox_and_loses_nothing_before() {
        // The client does not read: the kernel's buffers fill, the rest queues here,
        // and past the byte limit the connection is a slow consumer.
        let (ob, mut client) = pair(100_000, 256 * 1024).await;
        let body = Arc::new(Bytes::from(format!(r#"{{"t":"{}"}}"#, "y".repeat(4000))));
        assert_eq!(ob.open(body.clone()), Offer::Taken);
        let mut taken = 1;
        let last = loop {
            match ob.offer(body.clone()) {
                Offer::Taken => taken += 1,
                other => break other,
            }
            assert!(taken < 100_000, "never full");
        };
        assert_eq!(last, Offer::Full);
        assert!(ob.is_blocked());
        // The session is told that bytes wait for writability.
        tokio::time::timeout(std::time::Duration::from_secs(5), ob.blocked.notified()).await.unwrap();
        // Now the client reads; the session would call resume on writability.
        let reader = tokio::spawn(async move { read_all(&mut client).await });
        while !ob.is_empty() {
            ob.tcp().writable().await.unwrap();
            assert_ne!(ob.resume(), Offer::Failed);
        }
        let wire = reader.await.unwrap();
        let mut got = 0;
        for m in client_reads(&wire) {
            let v: serde_json::Value = serde_json::from_str(&m).unwrap();
            got += v.as_array().map_or(1, Vec::len);
        }
        assert_eq!(got, taken, "every frame taken was written, once");
    }
}
