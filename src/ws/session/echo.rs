//! A test-only WebSocket echo at `/test-echo`, mounted only with the hidden
//! `--test-echo-route` flag (off by default; a normal server answers that path with the
//! web client's index page and never upgrades it). It exists for the Autobahn
//! conformance run (tests/autobahn/): the fuzzing client can only talk to an echo
//! server and cannot send a cookie or a token.
//!
//! It is built from the production pieces, not copies: the same handshake check
//! (`ws::accept_key`), the same codec settings and limits ([`super::config`]:
//! read buffer, `--max-frame-bytes` for frames and messages), the same socket adapter
//! ([`super::Io`]) writing through an [`Outbox`], the same close codes for a broken
//! protocol ([`super::broken`], [`super::close_code`]) and the same close handshake and
//! linger ([`super::close_and_linger`]). It is a child of `session` so it can use these
//! without widening their visibility. What differs: no authentication, no chat, no
//! `closing` JSON frame before the Close (an echo speaks bare RFC 6455), and it echoes
//! text and binary messages where the chat session decodes commands.

use std::io;

use bytes::Bytes;

use axum::{
    Router,
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tungstenite::{
    Message,
    protocol::{
        CloseFrame, Role, WebSocketContext,
        frame::{
            FrameHeader,
            coding::{CloseCode, Data, OpCode},
        },
    },
};

use super::{End, Io, broken, close_and_linger, close_code, config};
use crate::{
    app::AppState,
    error::ApiError,
    ws::outbox::{Offer, Outbox},
};

/// Where the echo answers when the flag is on.
pub const PATH: &str = "/test-echo";

/// The echo route when `enabled` (`--test-echo-route`), else nothing.
pub fn router(enabled: bool) -> Router<AppState> {
    if !enabled {
        return Router::new();
    }
    tracing::warn!(path = PATH, "--test-echo-route: an unauthenticated WebSocket echo is served; for tests only");
    Router::new().route(PATH, get(handler))
}

async fn handler(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (mut parts, _body) = req.into_parts();
    let accept = crate::ws::accept_key(&parts.method, &parts.headers)?;
    let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
        return Err(ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "websocket_required",
            "the connection cannot be upgraded",
        ));
    };
    let max = state.chat.policy.max_frame_bytes;
    let frames = state.chat.policy.outbox_frames;
    let bytes = state.hub.outbox_bytes();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "echo upgrade failed");
                return;
            }
        };
        // As in `ws::handler`: our accept loop serves plain TCP streams.
        match upgraded.downcast::<TokioIo<crate::http::deadline::WriteDeadline<TcpStream>>>() {
            Ok(parts) => {
                let early = parts.read_buf.to_vec();
                run(parts.io.into_inner().into_inner(), early, max, frames, bytes).await
            }
            Err(_) => tracing::error!("an upgraded connection is not a TCP stream"),
        }
    });
    let mut res = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    Ok(res)
}

/// Echoes every message until the client closes or breaks the protocol.
async fn run(tcp: TcpStream, early: Vec<u8>, max: usize, frames: usize, bytes: usize) {
    let out = Outbox::new(tcp, frames, bytes);
    if out.open_bare() == Offer::Failed {
        return;
    }
    let mut ws = WebSocketContext::from_partially_read(early, Role::Server, Some(config(max)));
    let (end, close) = match echo(&mut ws, &out, max).await {
        Ok(()) => (End::Client, None),
        Err((code, reason)) => {
            tracing::debug!(code, reason, "echo client broke the protocol");
            (End::Broken, Some(CloseFrame { code: CloseCode::from(close_code(code)), reason: code.into() }))
        }
    };
    close_and_linger(&mut ws, &out, end, close).await;
}

/// The read loop: `Ok` when the client closed or went away, `Err` with the `closing`
/// code and reason when it broke the protocol (the codec is not read again then).
async fn echo(ws: &mut WebSocketContext, out: &Outbox, max: usize) -> Result<(), (&'static str, String)> {
    loop {
        // What we echo waits in the outbox while the client does not read: read no
        // more until it has left, so a client that only writes cannot grow it.
        while out.is_blocked() {
            if out.tcp().writable().await.is_err() || out.resume() == Offer::Failed {
                return Ok(());
            }
        }
        // The same error handling as the chat session's `read_ready`.
        let msg = match ws.read(&mut Io(out)) {
            Ok(m) => m,
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                if out.tcp().readable().await.is_err() {
                    return Ok(());
                }
                continue;
            }
            Err(
                tungstenite::Error::ConnectionClosed
                | tungstenite::Error::AlreadyClosed
                | tungstenite::Error::Io(_)
                | tungstenite::Error::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake),
            ) => return Ok(()),
            Err(e) => return Err(broken(&e, max)),
        };
        let echoed = match msg {
            Message::Text(t) => out.raw(framed(Data::Text, t.as_bytes())),
            Message::Binary(b) => out.raw(framed(Data::Binary, &b)),
            // The codec queued the close reply; `close_and_linger` sends it.
            Message::Close(_) => return Ok(()),
            // The codec answers pings itself (on its next read or write).
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Offer::Taken,
        };
        if echoed == Offer::Failed {
            return Ok(());
        }
        tokio::task::consume_budget().await;
    }
}

/// One unfragmented server frame (FIN, no mask) around `payload`, headed as the
/// outbox heads its text frames. Not written through the codec: its write buffer is
/// capped at 1 MiB (it only ever writes control frames for the chat), and the echo
/// must send back messages as large as `--max-frame-bytes` lets in.
fn framed(opcode: Data, payload: &[u8]) -> Bytes {
    let head = FrameHeader { opcode: OpCode::Data(opcode), ..FrameHeader::default() };
    let len = payload.len() as u64;
    let mut wire = Vec::with_capacity(head.len(len) + payload.len());
    // Writing to a Vec cannot fail.
    let _ = head.format(len, &mut wire);
    wire.extend_from_slice(payload);
    Bytes::from(wire)
}
