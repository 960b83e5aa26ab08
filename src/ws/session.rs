//! One WebSocket connection: a writer task and a reader loop joined by `select!`,
//! generic over `Sink`/`Stream` so it runs the same over a real socket or in-memory
//! channels. The writer drains the connection's bounded outbox and, when several
//! frames are queued, sends them as ONE JSON array in one WebSocket frame (one write
//! instead of many). The reader decodes commands and calls `chat`; sends are
//! pipelined (many in flight, acked in order).

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use bytes::{Bytes, BytesMut};
use futures_util::{Sink, SinkExt, Stream, StreamExt, stream::FuturesOrdered};
use tokio::sync::mpsc;

use super::protocol::{ClientFrame, ServerFrame, decode_client};
use crate::{
    chat::{Actor, Chat, ChatError, Resume},
    hub::{ConnId, ConnShared, Frame, Hub, Registration},
};

/// Frames coalesced into one WebSocket frame at most.
const MAX_COALESCE: usize = 256;
/// Bytes coalesced into one WebSocket frame at most.
const MAX_COALESCE_BYTES: usize = 60 * 1024;
/// How often the server pings an idle client (keeps NATs and proxies from dropping it).
const PING_EVERY: Duration = Duration::from_secs(30);
/// How long the goodbye (closing frame, close handshake) may take.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

fn text(b: Bytes) -> Message {
    match Utf8Bytes::try_from(b) {
        Ok(t) => Message::Text(t),
        // Our frames are serde_json output, always UTF-8.
        Err(_) => Message::Text(Utf8Bytes::from_static("{}")),
    }
}

/// Serves one authenticated connection until it closes.
pub async fn run<S, E>(socket: S, chat: Arc<Chat>, hub: Arc<Hub>, actor: Actor)
where
    S: Sink<Message, Error = E> + Stream<Item = Result<Message, E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let user = actor.user.id;
    let (mut sink, stream) = socket.split();
    // The start-up and command futures are boxed: inline, their large states would
    // size this connection's future for its whole life.
    let Some(reg) = Box::pin(start(&mut sink, &chat, &hub, &actor)).await else { return };
    let writer = tokio::spawn(write_loop(sink, reg.outbox, reg.shared.clone(), first_ping(reg.id)));
    read_loop(stream, &chat, &hub, &actor, reg.id, &reg.shared, writer).await;

    let rooms_at_end = hub.unregister(reg.id);
    if let Err(e) = Box::pin(chat.disconnected(user, &rooms_at_end)).await {
        tracing::warn!(error = %e, "presence update failed");
    }
    tracing::debug!(user_id = user, conn = reg.id, "disconnected");
}

/// Subscribes the connection, sends the hello, announces presence and queues each
/// room's online list. A separate function so its temporaries (the room list, the
/// hello) are freed before the connection settles in for hours.
async fn start<K, E>(sink: &mut K, chat: &Chat, hub: &Hub, actor: &Actor) -> Option<Registration>
where
    K: Sink<Message, Error = E> + Unpin,
{
    let user = actor.user.id;
    // Register first (the user's own topic), then load the rooms, then subscribe to
    // them, retrying if a join or removal for this user landed in between: otherwise a
    // removal could miss this new socket, or a join never reach it.
    let reg = hub.register(user, (actor.session.clone(), actor.token_id), &[], chat.policy.outbox_frames);
    let mut loaded = None;
    for _ in 0..5 {
        match chat.user_rooms(actor).await {
            Ok(rooms) => {
                let ids: Vec<_> = rooms.iter().map(|r| r.id).collect();
                if hub.subscribe_initial(reg.id, &ids) {
                    loaded = Some((rooms, ids));
                    break;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, user_id = user, "cannot load rooms for a new connection");
                break;
            }
        }
    }
    let Some((rooms, ids)) = loaded else {
        hub.unregister(reg.id);
        return None;
    };
    if let Err(e) = chat.connected(actor, &rooms).await {
        tracing::warn!(error = %e, "presence update failed");
    }
    let hello = ServerFrame::Hello {
        user: actor.author(),
        rooms,
        limits: chat.policy.limits(),
        server_time: crate::chat::now_ms(),
    };
    if sink.send(text(hello.encode())).await.is_err() {
        hub.unregister(reg.id);
        let _ = chat.disconnected(user, &ids).await;
        return None;
    }
    tracing::debug!(user_id = user, conn = reg.id, rooms = ids.len(), "connected");
    // Every room's online list in ONE queued frame (a JSON array): a member of more
    // rooms than the outbox holds frames must not be cut off at the door.
    let mut snapshot = Vec::with_capacity(ids.len());
    for r in &ids {
        match chat.presence_frame(*r).await {
            Ok(f) => snapshot.push(f),
            Err(e) => tracing::warn!(error = %e, room_id = r, "presence snapshot failed"),
        }
    }
    if !snapshot.is_empty() {
        hub.send_to(reg.id, crate::ws::protocol::encode_batch(&snapshot));
    }
    Some(reg)
}

/// When a connection's first ping is due: spread over one interval by connection id.
/// After a restart every client reconnects within seconds; pings in step would then
/// leave as one burst of thousands of writes every interval, a latency spike for all.
fn first_ping(id: ConnId) -> Duration {
    // Fibonacci hashing: consecutive ids land far apart in [0, 1).
    let frac = (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
    Duration::from_secs(1) + PING_EVERY.mul_f64(frac)
}

async fn write_loop<K, E>(mut sink: K, mut outbox: mpsc::Receiver<Frame>, shared: Arc<ConnShared>, first: Duration)
where
    K: Sink<Message, Error = E> + Unpin,
{
    // Grows with bursts, and is given back after them: an idle socket holds no buffer.
    let mut buf: Vec<Frame> = Vec::new();
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + first, PING_EVERY);
    // One waiter for the whole life of the loop: re-creating it per frame costs a
    // registration on the hot path.
    let stop = shared.notify.notified();
    tokio::pin!(stop);
    loop {
        // The outbox first: polling the stop signal takes its lock, and a frame is
        // the common wake-up. A steady stream of frames cannot hide a close: the flag
        // is checked after every write.
        tokio::select! {
            biased;
            n = outbox.recv_many(&mut buf, MAX_COALESCE) => {
                if n == 0 { break; }
                // A peer that stopped reading blocks this write; being told to close
                // (slow consumer, shutdown) must still end the connection.
                tokio::select! {
                    r = write_coalesced(&mut sink, &mut buf, &shared.queued_bytes) => {
                        if r.is_err() {
                            shared.close_with("write_failed", "");
                            return;
                        }
                        if buf.capacity() > 16 {
                            buf = Vec::new();
                        }
                    },
                    _ = &mut stop => break,
                }
                if shared.is_closing() {
                    break;
                }
            }
            _ = &mut stop => break,
            _ = ping.tick() => {
                if sink.send(Message::Ping(Bytes::new())).await.is_err() {
                    shared.close_with("write_failed", "");
                    return;
                }
            }
        }
    }
    // Say why before closing, so the client can show it and knows to resume.
    let reason = shared.close_reason().unwrap_or(crate::hub::CloseReason { code: "closed", reason: String::new() });
    let closing = ServerFrame::Closing { code: reason.code.to_string(), reason: reason.reason.clone() };
    // 1000 normal (the client left), 1012 service restart, 1013 try again later (fell
    // behind: reconnect and resume), 1008 policy (the session ended).
    let code = match reason.code {
        "server_shutdown" => 1012,
        "slow_consumer" => 1013,
        "session_ended" => 1008,
        _ => 1000,
    };
    let goodbye = async {
        sink.send(text(closing.encode())).await?;
        sink.send(Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from(reason.code) }))).await?;
        sink.close().await
    };
    // A peer that does not read gets no goodbye: the socket is dropped after this.
    let _ = tokio::time::timeout(CLOSE_WAIT, goodbye).await;
}

/// Writes the queued frames: one frame as is, several as one JSON array per
/// `MAX_COALESCE_BYTES`, then one flush.
async fn write_coalesced<K, E>(sink: &mut K, buf: &mut Vec<Frame>, queued: &AtomicUsize) -> Result<(), E>
where
    K: Sink<Message, Error = E> + Unpin,
{
    // These bytes leave the outbox now (written, or the connection is failing).
    queued.fetch_sub(buf.iter().map(|f| f.len()).sum::<usize>(), Ordering::Relaxed);
    if buf.len() == 1 {
        let one = buf.pop().map(|f| (*f).clone()).unwrap_or_default();
        return sink.send(text(one)).await;
    }
    let mut out = BytesMut::new();
    for frame in buf.drain(..) {
        // A queued frame may itself be an array (a batch built upstream): splice its
        // elements in, so clients only ever see one level.
        let body: &[u8] = match frame.first() {
            Some(b'[') => frame.get(1..frame.len().saturating_sub(1)).unwrap_or_default(),
            _ => &frame,
        };
        if body.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if !out.is_empty() && out.len() + body.len() + 2 > MAX_COALESCE_BYTES {
            out.extend_from_slice(b"]");
            sink.feed(text(out.split().freeze())).await?;
        }
        out.extend_from_slice(if out.is_empty() { b"[" } else { b"," });
        out.extend_from_slice(body);
    }
    if out.is_empty() {
        return sink.flush().await;
    }
    out.extend_from_slice(b"]");
    sink.feed(text(out.freeze())).await?;
    sink.flush().await
}

type Ack = (String, Result<(Option<i64>, bool), ChatError>, i64, String);

async fn read_loop<T, E>(
    mut stream: T,
    chat: &Chat,
    hub: &Hub,
    actor: &Actor,
    conn: ConnId,
    shared: &ConnShared,
    mut writer: tokio::task::JoinHandle<()>,
) where
    T: Stream<Item = Result<Message, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut pending: FuturesOrdered<std::pin::Pin<Box<dyn std::future::Future<Output = Ack> + Send>>> =
        FuturesOrdered::new();
    let reply = |f: ServerFrame| hub.send_to(conn, f.encode());
    loop {
        tokio::select! {
            _ = &mut writer => return,
            Some(done) = pending.next(), if !pending.is_empty() => reply(ack_frame(done)),
            msg = stream.next() => {
                let msg = match msg {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "websocket read failed");
                        break;
                    }
                    None => break,
                };
                match msg {
                    Message::Text(t) => {
                        match decode_client(t.as_str()) {
                            Ok(frame) => {
                                if let Some(f) = Box::pin(handle(chat, actor, frame, &mut pending)).await {
                                    reply(f);
                                }
                            }
                            Err(e) => reply(ServerFrame::Error { id: e.id, code: e.code.to_string(), message: e.message }),
                        }
                    }
                    Message::Binary(_) => reply(ServerFrame::error(None, "bad_request", "binary frames are not supported; send JSON text")),
                    Message::Close(_) => break,
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
        }
    }
    // Let accepted sends finish so their acks are not lost while the writer still runs.
    while let Some(done) = pending.next().await {
        reply(ack_frame(done));
    }
    shared.close_with("closed", "");
    let _ = writer.await;
}

/// The reply to a finished send: its ack, or the error naming it.
fn ack_frame((id, result, room, client_id): Ack) -> ServerFrame {
    match result {
        Ok((seq, duplicate)) => ServerFrame::Ack { id, room: Some(room), seq, client_id: Some(client_id), duplicate },
        Err(e) => error_frame(Some(id), &e),
    }
}

fn error_frame(id: Option<String>, e: &ChatError) -> ServerFrame {
    if let ChatError::Internal(detail) = e {
        tracing::error!(error = %detail, "command failed");
    }
    ServerFrame::Error { id, code: e.code().to_string(), message: e.public_message() }
}

/// Runs one command; returns the immediate reply, if any (sends reply later, in order).
async fn handle(
    chat: &Chat,
    actor: &Actor,
    frame: ClientFrame,
    pending: &mut FuturesOrdered<std::pin::Pin<Box<dyn std::future::Future<Output = Ack> + Send>>>,
) -> Option<ServerFrame> {
    match frame {
        ClientFrame::Send { id, room, client_id, text } => match chat.send(actor, room, &client_id, &text).await {
            Ok(receipt) => {
                pending.push_back(Box::pin(async move { (id, receipt.wait().await, room, client_id) }));
                None
            }
            Err(e) => Some(error_frame(Some(id), &e)),
        },
        ClientFrame::History { id, room, before, limit } => {
            Some(match chat.history(actor, room, before, limit).await {
                Ok((events, more)) => ServerFrame::History { id, room, events, more },
                Err(e) => error_frame(Some(id), &e),
            })
        }
        ClientFrame::Resume { id, room, after } => Some(match chat.resume(actor, room, after).await {
            Ok(Resume::Events { events, last_seq, more }) => ServerFrame::Resumed { id, room, events, last_seq, more },
            Ok(Resume::Gap { earliest_seq, last_seq }) => ServerFrame::Gap { id, room, earliest_seq, last_seq },
            Err(e) => error_frame(Some(id), &e),
        }),
        ClientFrame::Join { id, room } => Some(match chat.join(actor, room).await {
            Ok(_) => ServerFrame::Ack { id, room: Some(room), seq: None, client_id: None, duplicate: false },
            Err(e) => error_frame(Some(id), &e),
        }),
        ClientFrame::Leave { id, room } => Some(match chat.leave(actor, room).await {
            Ok(()) => ServerFrame::Ack { id, room: Some(room), seq: None, client_id: None, duplicate: false },
            Err(e) => error_frame(Some(id), &e),
        }),
        ClientFrame::Typing { id, room } => match chat.typing(actor, room).await {
            Ok(()) => None,
            Err(e) => Some(error_frame(id, &e)),
        },
        ClientFrame::Read { id, room, seq } => match chat.mark_read(actor, room, seq).await {
            Ok(seq) => id.map(|id| ServerFrame::Ack {
                id,
                room: Some(room),
                seq: Some(seq),
                client_id: None,
                duplicate: false,
            }),
            Err(e) => Some(error_frame(id, &e)),
        },
        ClientFrame::Ping { id } => Some(ServerFrame::Pong { id }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_pings_spread_over_the_interval() {
        // 1,000 consecutive connections: every tenth of the interval gets its share.
        let mut buckets = [0u32; 10];
        for id in 1..=1000 {
            let d = first_ping(id);
            assert!(d >= Duration::from_secs(1) && d < Duration::from_secs(1) + PING_EVERY);
            buckets[((d - Duration::from_secs(1)).as_secs_f64() / PING_EVERY.as_secs_f64() * 10.0) as usize] += 1;
        }
        assert!(buckets.iter().all(|n| (80..=120).contains(n)), "{buckets:?}");
    }

    #[tokio::test]
    async fn coalesces_queued_frames_into_one_array() {
        let mut sink: Vec<Message> = Vec::new();
        let mut buf = vec![Arc::new(Bytes::from_static(br#"{"a":1}"#)), Arc::new(Bytes::from_static(br#"{"b":2}"#))];
        write_coalesced(&mut sink, &mut buf, &AtomicUsize::new(usize::MAX / 2)).await.unwrap();
        let mut one = vec![Arc::new(Bytes::from_static(br#"{"c":3}"#))];
        write_coalesced(&mut sink, &mut one, &AtomicUsize::new(usize::MAX / 2)).await.unwrap();
        let texts: Vec<String> = sink
            .iter()
            .map(|m| match m {
                Message::Text(t) => t.as_str().to_string(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(texts, [r#"[{"a":1},{"b":2}]"#, r#"{"c":3}"#]);
    }

    #[tokio::test]
    async fn splices_queued_arrays_into_one_level() {
        let mut sink: Vec<Message> = Vec::new();
        let mut buf: Vec<Frame> = [&br#"{"a":1}"#[..], br#"[{"b":2},{"c":3}]"#, b"[]", br#"{"d":4}"#]
            .iter()
            .map(|b| Arc::new(Bytes::copy_from_slice(b)))
            .collect();
        write_coalesced(&mut sink, &mut buf, &AtomicUsize::new(usize::MAX / 2)).await.unwrap();
        let Some(Message::Text(t)) = sink.first() else { panic!() };
        assert_eq!(t.as_str(), r#"[{"a":1},{"b":2},{"c":3},{"d":4}]"#);
    }

    #[tokio::test]
    async fn splits_a_large_backlog_into_bounded_frames() {
        let mut sink: Vec<Message> = Vec::new();
        let frame = Bytes::from(format!(r#"{{"t":"{}"}}"#, "x".repeat(1000)));
        let frame = Arc::new(frame);
        let mut buf: Vec<Frame> = (0..200).map(|_| frame.clone()).collect();
        write_coalesced(&mut sink, &mut buf, &AtomicUsize::new(usize::MAX / 2)).await.unwrap();
        assert!(sink.len() > 1);
        let mut total = 0;
        for m in &sink {
            let Message::Text(t) = m else { panic!() };
            assert!(t.len() <= MAX_COALESCE_BYTES + 2);
            let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
            total += v.as_array().map_or(1, Vec::len);
        }
        assert_eq!(total, 200, "every queued frame is sent exactly once");
    }
}
