//! One WebSocket connection, served by one task: it reads and decodes the client's
//! commands (tungstenite's codec over the bare socket), calls `chat`, pipelines sends
//! (many in flight, acked in order), pings, and finishes writes that a full socket
//! buffer held back. Everything the connection receives goes through its [`Outbox`],
//! which writes to the socket from whichever task hands it a frame; there is no
//! writer task.
//!
//! [`Outbox`]: super::outbox::Outbox

use std::{io, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::{FutureExt, StreamExt, stream::FuturesOrdered};
use tokio::net::TcpStream;
use tungstenite::{
    Message,
    protocol::{CloseFrame, Role, WebSocketConfig, WebSocketContext, frame::coding::CloseCode},
};

#[doc(hidden)]
pub mod echo;

use super::{
    outbox::{Offer, Outbox, PING},
    protocol::{ClientFrame, ServerFrame, decode_client},
};
use crate::{
    chat::{Actor, Chat, ChatError, Resume, SendReceipt},
    hub::{ConnId, ConnShared, Hub},
};

/// How often the server pings an idle client (keeps NATs and proxies from dropping it).
const PING_EVERY: Duration = Duration::from_secs(30);
/// How long the goodbye (closing frame, close handshake) may take.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// tungstenite's read buffer per connection, also the most one read takes (it grows
/// for a larger frame). A chat command is typically 100-300 bytes; 256 B instead of
/// DESIGN.md's 4 KiB saves 3.75 KiB on every idle socket. The price is more reads for
/// a burst of commands: `persist` (64 sends in flight per socket) stored ~2 % less
/// than with 512 B, and 512 B as much as 1 KiB, in alternating runs (BENCHMARKS.md).
const READ_BUFFER: usize = 256;

/// The socket as tungstenite's codec sees it: reads come from the socket (never
/// blocking), and what the codec writes (pongs, the close reply) joins the outbox, in
/// order with everything else.
struct Io<'a>(&'a Outbox);

impl io::Read for Io<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.tcp().try_read(buf)
    }
}

impl io::Write for Io<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.0.raw(Bytes::copy_from_slice(buf)) {
            Offer::Failed => Err(io::ErrorKind::BrokenPipe.into()),
            _ => Ok(buf.len()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Who ended the conversation.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The client closed (answered with a Close frame) or went away: nothing else is
    /// sent.
    Client,
    /// We close (the reason is in `ConnShared`): say why, then close.
    Server,
    /// The client broke the protocol (the reason is in `ConnShared`): say why, close,
    /// and discard what the client still sends, unparsed: the codec is not to be read
    /// again after an error.
    Broken,
}

/// Serves one authenticated connection until it closes. `early` holds bytes the
/// client sent right behind its handshake.
/// The actor comes boxed: the spawning task keeps its (moved-out) captures for the
/// connection's whole life, so a pointer there is 8 bytes where the actor is ~160.
pub async fn run(tcp: TcpStream, early: Vec<u8>, chat: Arc<Chat>, hub: Arc<Hub>, actor: Box<Actor>) {
    let user = actor.user.id;
    let shared = ConnShared::new(tcp, chat.policy.outbox_frames, hub.outbox_bytes());
    let mut ws = WebSocketContext::from_partially_read(early, Role::Server, Some(config(chat.policy.max_frame_bytes)));
    // The start-up and command futures are boxed: inline, their large states would
    // size this connection's future for its whole life.
    let Some(id) = Box::pin(start(&shared, &chat, &hub, &actor)).await else { return };
    let end = read_loop(&mut ws, &chat, &hub, &actor, id, &shared).await;
    // Still registered during the goodbye: a shutdown waits for it (frames published
    // meanwhile find the outbox sealed).
    goodbye(&mut ws, &shared, end).await;
    let rooms_at_end = hub.unregister(id);
    if let Err(e) = Box::pin(chat.disconnected(user, &rooms_at_end)).await {
        tracing::warn!(error = %e, "presence update failed");
    }
    tracing::debug!(user_id = user, conn = id, "disconnected");
}

/// The codec's settings: the read buffer above, writes straight through to the
/// outbox, and the client's frames and messages bounded by `--max-frame-bytes`.
fn config(max_frame_bytes: usize) -> WebSocketConfig {
    let max = Some(max_frame_bytes);
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(1024 * 1024)
        .max_message_size(max)
        .max_frame_size(max)
}

/// Subscribes the connection, sends the hello, announces presence and queues each
/// room's online list. A separate function so its temporaries (the room list, the
/// hello) are freed before the connection settles in for hours.
async fn start(shared: &Arc<ConnShared>, chat: &Chat, hub: &Hub, actor: &Actor) -> Option<ConnId> {
    let user = actor.user.id;
    // Register first (the user's own topic), then load the rooms, then subscribe to
    // them, retrying if a join or removal for this user landed in between: otherwise a
    // removal could miss this new socket, or a join never reach it. Until the hello
    // is written, what the hub hands this connection waits in its outbox.
    let id = hub.register(user, (actor.session.clone(), actor.token_id), &[], shared.clone());
    let mut loaded = None;
    for _ in 0..5 {
        match chat.user_rooms(actor).await {
            Ok(rooms) => {
                let seqs: Vec<_> = rooms.iter().map(|r| (r.id, r.last_seq)).collect();
                if hub.subscribe_initial(id, &seqs) {
                    let ids: Vec<_> = seqs.into_iter().map(|(r, _)| r).collect();
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
        hub.unregister(id);
        return None;
    };
    let blocked = match chat.blocked_ids(user).await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, user_id = user, "cannot load blocks for a new connection");
            hub.unregister(id);
            return None;
        }
    };
    if let Err(e) = chat.connected(actor, &rooms).await {
        tracing::warn!(error = %e, "presence update failed");
    }
    let hello = ServerFrame::Hello {
        user: actor.author(),
        rooms,
        limits: chat.policy.limits(),
        server_time: crate::chat::now_ms(),
        blocked,
    };
    if shared.out.open(Arc::new(hello.encode())) == Offer::Failed {
        hub.unregister(id);
        let _ = chat.disconnected(user, &ids).await;
        return None;
    }
    tracing::debug!(user_id = user, conn = id, rooms = ids.len(), "connected");
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
        hub.refused(shared, shared.out.offer(Arc::new(crate::ws::protocol::encode_batch(&snapshot))));
    }
    Some(id)
}

/// When a connection's first ping is due: spread over one interval by connection id.
/// After a restart every client reconnects within seconds; pings in step would then
/// leave as one burst of thousands of writes every interval, a latency spike for all.
fn first_ping(id: ConnId) -> Duration {
    // Fibonacci hashing: consecutive ids land far apart in [0, 1).
    let frac = (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
    Duration::from_secs(1) + PING_EVERY.mul_f64(frac)
}

/// The WebSocket close code (RFC 6455 §7.4.1) for a `closing` code: 1012 service
/// restart, 1013 try again later (fell behind: reconnect and resume), 1008 policy (the
/// session ended), 1009 message too big, 1007 invalid UTF-8, 1002 protocol error.
fn close_code(closing: &str) -> u16 {
    match closing {
        "server_shutdown" => 1012,
        "slow_consumer" => 1013,
        "session_ended" => 1008,
        MESSAGE_TOO_BIG => 1009,
        INVALID_UTF8 => 1007,
        PROTOCOL_ERROR => 1002,
        _ => 1000,
    }
}

/// `closing` codes for a client that broke the protocol (docs/PROTOCOL.md §3.6).
const MESSAGE_TOO_BIG: &str = "message_too_big";
const INVALID_UTF8: &str = "invalid_utf8";
const PROTOCOL_ERROR: &str = "protocol_error";

/// The `closing` code and reason for a frame the codec refused.
fn broken(e: &tungstenite::Error, max: usize) -> (&'static str, String) {
    match e {
        tungstenite::Error::Capacity(_) => (MESSAGE_TOO_BIG, format!("a message is over {max} bytes")),
        tungstenite::Error::Utf8(_) => (INVALID_UTF8, "a text message is not valid UTF-8".into()),
        e => (PROTOCOL_ERROR, e.to_string()),
    }
}

/// Says why (a `closing` frame), closes with the code [`close_code`] gives, and waits,
/// at most `CLOSE_WAIT`, for the bytes to leave and the client to close.
async fn goodbye(ws: &mut WebSocketContext, shared: &ConnShared, end: End) {
    let out = &shared.out;
    let close = (end != End::Client).then(|| {
        // Every close sets its reason first; `closed` is only a fallback.
        let reason = shared.close_reason().unwrap_or(crate::hub::CloseReason { code: "closed", reason: String::new() });
        let closing = ServerFrame::Closing { code: reason.code.to_string(), reason: reason.reason.clone() };
        out.seal_with(Arc::new(closing.encode()));
        CloseFrame { code: CloseCode::from(close_code(reason.code)), reason: reason.code.into() }
    });
    close_and_linger(ws, out, end, close).await
}

/// Sends our Close frame (`close`, when we close) or the close reply the codec holds,
/// then waits, at most `CLOSE_WAIT`, for the bytes to leave and the client to close.
/// Shared with the test-only [`echo`] route, which sends no `closing` frame.
async fn close_and_linger(ws: &mut WebSocketContext, out: &Outbox, end: End, close: Option<CloseFrame>) {
    if let Some(frame) = close {
        let _ = ws.close(&mut Io(out), Some(frame));
    } else {
        // A close reply the codec still holds.
        let _ = ws.flush(&mut Io(out));
    }
    let linger = async {
        // Every queued byte first, also what another task is writing: shut before
        // that, the goodbye itself would be lost.
        if !out.flush().await {
            return;
        }
        if end == End::Client {
            return;
        }
        // Half-close, then read until the client closes too: closing with unread
        // bytes in the receive buffer would reset the connection and could destroy
        // the goodbye before the client reads it. The client may still be writing
        // (the rest of an oversized message, commands sent before it saw the Close):
        // once the codec cannot make sense of it, it is read and dropped unparsed.
        // (After an oversized frame's header, reading on in the codec ends as if the
        // peer had closed, and a debug build asserts: the reset of issue 14.)
        shutdown_write(out.tcp());
        let mut raw = end == End::Broken;
        loop {
            if out.tcp().readable().await.is_err() {
                return;
            }
            if raw {
                match discard(out.tcp()) {
                    Ok(false) => tokio::task::consume_budget().await,
                    Ok(true) | Err(_) => return,
                }
                continue;
            }
            match ws.read(&mut Io(out)) {
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
                Ok(_) => {}
                // The client's Close came back, or it closed, or the socket failed.
                Err(
                    tungstenite::Error::ConnectionClosed
                    | tungstenite::Error::AlreadyClosed
                    | tungstenite::Error::Io(_)
                    | tungstenite::Error::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake),
                ) => return,
                // A frame after our Close, or one the codec refuses.
                Err(_) => raw = true,
            }
        }
    };
    // A peer that does not read gets no goodbye: the socket is dropped after this.
    let _ = tokio::time::timeout(CLOSE_WAIT, linger).await;
}

/// Drops the waker that hyper's connection task left in the socket's registration.
/// This task waits with `readable()`, which does not replace it, so it would keep the
/// finished HTTP task's memory (1.6 KB) for the life of an idle connection. Called once
/// the socket has been read dry: then the poll is pending and takes our no-op waker.
fn forget_http_task(tcp: &TcpStream) {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let _ = tcp.poll_read_ready(&mut cx);
    let _ = tcp.poll_write_ready(&mut cx);
}

/// Reads and drops what the socket holds, up to 64 KiB a call (the caller yields
/// between calls). `Ok(true)` once the peer has closed its side.
fn discard(tcp: &TcpStream) -> io::Result<bool> {
    // On the stack of this call only: not part of the connection's future.
    let mut buf = [0u8; 4096];
    for _ in 0..16 {
        match tcp.try_read(&mut buf) {
            Ok(0) => return Ok(true),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

fn shutdown_write(tcp: &TcpStream) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is owned by `tcp`, alive for this call; shutdown(2) only
    // changes the connection's state.
    unsafe {
        libc::shutdown(tcp.as_raw_fd(), libc::SHUT_WR);
    }
}

type Ack = (String, Result<(Option<i64>, bool), ChatError>, i64, Option<String>);
type Pending = FuturesOrdered<std::pin::Pin<Box<dyn std::future::Future<Output = Ack> + Send>>>;

/// The next finished send, if any are in flight.
async fn next_ack(pending: &mut Option<Pending>) -> Option<Ack> {
    pending.as_mut()?.next().await
}

async fn read_loop(
    ws: &mut WebSocketContext,
    chat: &Chat,
    hub: &Hub,
    actor: &Actor,
    conn: ConnId,
    shared: &ConnShared,
) -> End {
    // Created with the first send, dropped when drained: an idle socket holds none.
    let mut pending: Option<Pending> = None;
    let out = &shared.out;
    // Replies go straight to this connection's own outbox.
    let reply = |f: ServerFrame| hub.refused(shared, out.offer(Arc::new(f.encode())));
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + first_ping(conn), PING_EVERY);
    let stop = shared.notify.notified();
    tokio::pin!(stop);
    let blocked = out.blocked.notified();
    tokio::pin!(blocked);
    let mut want_write = false;
    // Commands may have come right behind the handshake, already in the codec's buffer.
    let mut can_read = true;
    let mut first_read = true;
    let end = loop {
        if can_read {
            can_read = false;
            match read_ready(ws, out, chat, actor, &mut pending, &reply).await {
                Read::More if first_read => {
                    first_read = false;
                    forget_http_task(out.tcp());
                }
                Read::More => {}
                Read::Gone => break End::Client,
                Read::Broken(code, reason) => {
                    shared.close_with(code, reason);
                    break End::Broken;
                }
            }
        }
        tokio::select! {
            biased;
            _ = &mut stop => break End::Server,
            _ = &mut blocked => {
                want_write = true;
                blocked.set(out.blocked.notified());
            }
            // A failed write closes the connection (`refused`): `stop` ends the loop.
            r = out.tcp().writable(), if want_write => {
                hub.refused(shared, if r.is_err() { Offer::Failed } else { out.resume() });
                want_write = out.is_blocked();
            }
            Some(done) = next_ack(&mut pending), if pending.is_some() => {
                // One commit finishes many sends at once: their acks leave in one write.
                let mut owe_write = false;
                let mut queue = |done| match out.enqueue(Arc::new(ack_frame(done).encode())) {
                    Ok(owner) => owe_write |= owner,
                    Err(o) => hub.refused(shared, o),
                };
                queue(done);
                while let Some(Some(done)) = pending.as_mut().and_then(|p| p.next().now_or_never()) {
                    queue(done);
                }
                if pending.as_ref().is_some_and(FuturesOrdered::is_empty) {
                    pending = None;
                }
                if owe_write {
                    hub.refused(shared, out.write_queued());
                }
            }
            r = out.tcp().readable() => {
                if r.is_err() {
                    break End::Client;
                }
                can_read = true;
            }
            _ = ping.tick() => hub.refused(shared, out.raw(Bytes::from_static(PING))),
        }
    };
    if end != End::Client {
        // Let accepted sends finish so their acks go out before the goodbye.
        let acks = async {
            while let Some(done) = next_ack(&mut pending).await {
                reply(ack_frame(done));
            }
        };
        let _ = tokio::time::timeout(CLOSE_WAIT, acks).await;
    }
    end
}

/// What reading found.
enum Read {
    /// Everything there was is handled; wait for more.
    More,
    /// The client closed or the connection is gone.
    Gone,
    /// The client broke the protocol (a bad or oversized frame): the `closing` code
    /// and reason.
    Broken(&'static str, String),
}

/// Reads and handles every command the socket has.
async fn read_ready(
    ws: &mut WebSocketContext,
    out: &Outbox,
    chat: &Chat,
    actor: &Actor,
    pending: &mut Option<Pending>,
    reply: &impl Fn(ServerFrame),
) -> Read {
    loop {
        // Read until the socket has nothing more: only then does readiness rearm.
        let msg = match ws.read(&mut Io(out)) {
            Ok(m) => m,
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return Read::More,
            Err(
                tungstenite::Error::ConnectionClosed
                | tungstenite::Error::AlreadyClosed
                | tungstenite::Error::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake),
            ) => return Read::Gone,
            Err(tungstenite::Error::Io(e)) => {
                tracing::debug!(error = %e, "websocket read failed");
                return Read::Gone;
            }
            Err(e) => {
                tracing::debug!(error = %e, "websocket protocol error");
                let (code, reason) = broken(&e, chat.policy.max_frame_bytes);
                return Read::Broken(code, reason);
            }
        };
        match msg {
            Message::Text(t) => match crate::metrics::decoded(decode_client(t.as_str())) {
                Ok(frame) => {
                    if let Some(f) = Box::pin(handle(chat, actor, frame, pending)).await {
                        reply(f);
                    }
                }
                Err(e) => {
                    reply(ServerFrame::Error { id: e.id, code: e.code.to_string(), message: e.message, until: None })
                }
            },
            Message::Binary(_) => {
                reply(ServerFrame::error(None, "bad_request", "binary frames are not supported; send JSON text"))
            }
            Message::Close(_) => return Read::Gone,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
        // A client that keeps the socket full must not starve the others.
        tokio::task::consume_budget().await;
    }
}

/// The reply to a finished send: its ack, or the error naming it.
fn ack_frame((id, result, room, client_id): Ack) -> ServerFrame {
    match result {
        Ok((seq, duplicate)) => ServerFrame::Ack { id, room: Some(room), seq, client_id, duplicate },
        Err(e) => error_frame(Some(id), &e),
    }
}

fn error_frame(id: Option<String>, e: &ChatError) -> ServerFrame {
    crate::metrics::command_error(e.code());
    if let ChatError::Internal(detail) = e {
        tracing::error!(error = %detail, "command failed");
    }
    let until = if let ChatError::Muted(t) = e { Some(*t) } else { None };
    ServerFrame::Error { id, code: e.code().to_string(), message: e.public_message(), until }
}

/// Queues the ack of an accepted send or action (acks leave in command order), or
/// answers a refusal at once.
fn queue_ack(
    pending: &mut Option<Pending>,
    id: String,
    room: crate::domain::RoomId,
    client_id: Option<String>,
    accepted: Result<SendReceipt, ChatError>,
) -> Option<ServerFrame> {
    match accepted {
        Ok(receipt) => {
            pending
                .get_or_insert_with(FuturesOrdered::new)
                .push_back(Box::pin(async move { (id, receipt.wait().await, room, client_id) }));
            None
        }
        Err(e) => Some(error_frame(Some(id), &e)),
    }
}

/// Runs one command; returns the immediate reply, if any (sends reply later, in order).
async fn handle(chat: &Chat, actor: &Actor, frame: ClientFrame, pending: &mut Option<Pending>) -> Option<ServerFrame> {
    match frame {
        ClientFrame::Send { id, room, client_id, text, reply_to, attachments } => {
            let r = chat.send_with_files(actor, room, &client_id, &text, reply_to, &attachments).await;
            queue_ack(pending, id, room, Some(client_id), r)
        }
        // Actions are acked in order with sends: the ack's seq is the action's own.
        ClientFrame::Edit { id, room, seq, text } => {
            let r = chat.edit(actor, room, seq, &text).await;
            queue_ack(pending, id, room, None, r)
        }
        ClientFrame::Delete { id, room, seq } => {
            let r = chat.delete(actor, room, seq).await;
            queue_ack(pending, id, room, None, r)
        }
        ClientFrame::React { id, room, seq, emoji, on } => {
            let r = chat.react(actor, room, seq, &emoji, on).await;
            queue_ack(pending, id, room, None, r)
        }
        ClientFrame::Notify { id, room, level } => Some(match chat.set_notify(actor, room, &level).await {
            Ok(_) => ServerFrame::Ack { id, room: Some(room), seq: None, client_id: None, duplicate: false },
            Err(e) => error_frame(Some(id), &e),
        }),
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
}
