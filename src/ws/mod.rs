//! The WebSocket endpoint `GET /ws`: authenticates the handshake (session cookie with a
//! same-origin check, or a bearer token), answers the upgrade, and hands the bare TCP
//! socket to [`session`]; an account holds at most `--max-sockets-per-user` sockets
//! per node ([`SocketSlots`]). We take the socket itself, not a wrapped stream: publishers
//! write to it directly ([`outbox`]), and tungstenite's codec reads from it. The frame
//! types live in [`protocol`].

pub mod outbox;
pub mod protocol;
pub mod session;

use axum::{
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::{
    app::AppState,
    domain::UserId,
    error::ApiError,
    http::{
        deadline::WriteDeadline,
        extract::{Credentials, authenticate},
    },
};

pub async fn handler(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (mut parts, _body) = req.into_parts();
    let creds = Credentials::from_headers(&parts.headers, &state.cookie_name);
    if matches!(creds, Credentials::Cookie(_)) {
        // A browser sends cookies on a cross-site WebSocket handshake too: only the
        // Origin header tells our own pages from someone else's (CSWSH).
        let origin = parts.headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        if origin != Some(state.chat.policy.origin.as_str()) {
            return Err(ApiError::bad_origin());
        }
    }
    let actor = Box::new(authenticate(&state.chat, creds).await?);
    let accept = accept_key(&parts.method, &parts.headers)?;
    // Held for the session's life: given back when it ends (or the upgrade fails).
    let slot = state.sockets.take(actor.user.id)?;
    let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
        return Err(not_websocket(StatusCode::UPGRADE_REQUIRED, "the connection cannot be upgraded"));
    };
    let chat = state.chat.clone();
    let hub = state.hub.clone();
    let fut = async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                return;
            }
        };
        // Our own accept loop (`crate::serve`) serves TCP streams with a write deadline
        // (taken off here: the session has its own rule for a peer that reads nothing).
        match upgraded.downcast::<TokioIo<WriteDeadline<TcpStream>>>() {
            Ok(parts) => {
                let hyper::upgrade::Parts { io, read_buf, .. } = parts;
                // Copied out and dropped now: even empty, the `Bytes` keeps hyper's
                // whole read buffer alive for as long as it lives.
                let early = read_buf.to_vec();
                drop(read_buf);
                session::run(io.into_inner().into_inner(), early, chat, hub, actor).await
            }
            Err(_) => tracing::error!("an upgraded connection is not a TCP stream"),
        }
        drop(slot);
    };
    tokio::spawn(fut);
    let mut res = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    Ok(res)
}

/// Open WebSockets per account on this node (`--max-sockets-per-user`). One account
/// with thousands of sockets (a buggy script, a stolen token) would cost the node
/// ~4 KiB and a descriptor each, and a fan-out write each per message: past the cap
/// the handshake is refused (`too_many_connections`, 429), and the sockets already
/// open are left alone (closing the oldest would let a runaway client knock the
/// person's own tabs off). The count is per node: with several nodes an account may
/// hold the cap on each.
pub struct SocketSlots {
    cap: usize,
    open: parking_lot::Mutex<std::collections::HashMap<UserId, usize>>,
}

/// One open WebSocket's place in [`SocketSlots`]; given back on drop.
pub struct SocketSlot {
    slots: std::sync::Arc<SocketSlots>,
    user: UserId,
}

impl SocketSlots {
    /// `cap` sockets per account; 0: no cap.
    pub fn new(cap: usize) -> Self {
        SocketSlots { cap, open: Default::default() }
    }

    /// A place for one more socket of `user`, or the error for the handshake.
    pub fn take(self: &std::sync::Arc<Self>, user: UserId) -> Result<SocketSlot, ApiError> {
        let mut open = self.open.lock();
        let n = open.entry(user).or_insert(0);
        if self.cap > 0 && *n >= self.cap {
            tracing::info!(
                user_id = user,
                cap = self.cap,
                "websocket refused: the account's connection cap is reached"
            );
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_connections",
                format!(
                    "this account already has {} open connections to this server; close a tab or device first",
                    self.cap
                ),
            ));
        }
        *n += 1;
        Ok(SocketSlot { slots: self.clone(), user })
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock();
        if let Some(n) = open.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.user);
            }
        }
    }
}

fn not_websocket(status: StatusCode, why: &str) -> ApiError {
    ApiError::new(status, "websocket_required", format!("GET /ws is a WebSocket endpoint: {why}"))
}

/// Checks the opening handshake (RFC 6455 §4.2.1) and returns `Sec-WebSocket-Accept`.
fn accept_key(method: &Method, h: &HeaderMap) -> Result<HeaderValue, ApiError> {
    let bad = |why| not_websocket(StatusCode::BAD_REQUEST, why);
    if method != Method::GET {
        return Err(not_websocket(StatusCode::METHOD_NOT_ALLOWED, "use GET"));
    }
    let has_token = |name: header::HeaderName, token: &str| {
        h.get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token(header::CONNECTION, "upgrade") {
        return Err(bad("the Connection header does not include 'upgrade'"));
    }
    if !has_token(header::UPGRADE, "websocket") {
        return Err(bad("the Upgrade header is not 'websocket'"));
    }
    if h.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
        return Err(bad("only WebSocket version 13 is supported"));
    }
    let Some(key) = h.get(header::SEC_WEBSOCKET_KEY) else {
        return Err(bad("the Sec-WebSocket-Key header is missing"));
    };
    if !is_handshake_key(key.as_bytes()) {
        return Err(bad("the Sec-WebSocket-Key header is not 16 bytes in base64"));
    }
    HeaderValue::from_str(&tungstenite::handshake::derive_accept_key(key.as_bytes()))
        .map_err(|_| bad("the Sec-WebSocket-Key header is malformed"))
}

/// RFC 6455 §4.1: the key is 16 bytes in base64, i.e. 22 base64 characters and `==`.
fn is_handshake_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22].iter().all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_valid_handshake_and_names_what_is_wrong_otherwise() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        h.insert(header::SEC_WEBSOCKET_KEY, HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="));
        // The example of RFC 6455 §1.3.
        assert_eq!(accept_key(&Method::GET, &h).unwrap(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(accept_key(&Method::POST, &h).unwrap_err().status, StatusCode::METHOD_NOT_ALLOWED);
        for (name, value) in
            [(header::CONNECTION, "keep-alive"), (header::UPGRADE, "h2c"), (header::SEC_WEBSOCKET_VERSION, "8")]
        {
            let mut bad = h.clone();
            bad.insert(name, HeaderValue::from_static(value));
            assert_eq!(accept_key(&Method::GET, &bad).unwrap_err().status, StatusCode::BAD_REQUEST);
        }
        let mut no_key = h.clone();
        no_key.remove(header::SEC_WEBSOCKET_KEY);
        assert_eq!(accept_key(&Method::GET, &no_key).unwrap_err().code, "websocket_required");
        // A key that is not 16 bytes in base64 (too short, too long, not base64).
        for key in [
            "abc",
            "",
            "!!!!not base64!!!!",
            "dGhlIHNhbXBsZSBub25j",
            "dGhlIHNhbXBsZSBub25jZSE=",
            "dGhlIHNhbXBsZSBub25j*Q==",
        ] {
            let mut bad = h.clone();
            bad.insert(header::SEC_WEBSOCKET_KEY, HeaderValue::from_static(key));
            let e = accept_key(&Method::GET, &bad).unwrap_err();
            assert_eq!((e.status, e.code), (StatusCode::BAD_REQUEST, "websocket_required"), "{key:?}");
        }
    }
}
