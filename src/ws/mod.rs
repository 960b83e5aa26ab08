//! The WebSocket endpoint `GET /ws`: authenticates the handshake (session cookie with a
//! same-origin check, or a bearer token), answers the upgrade, and hands the bare TCP
//! socket to [`session`]. We take the socket itself, not a wrapped stream: publishers
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
    error::ApiError,
    http::extract::{Credentials, authenticate},
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
        // Our own accept loop (`crate::serve`) serves plain TCP streams, so this holds.
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                let hyper::upgrade::Parts { io, read_buf, .. } = parts;
                // Copied out and dropped now: even empty, the `Bytes` keeps hyper's
                // whole read buffer alive for as long as it lives.
                let early = read_buf.to_vec();
                drop(read_buf);
                session::run(io.into_inner(), early, chat, hub, actor).await
            }
            Err(_) => tracing::error!("an upgraded connection is not a TCP stream"),
        }
    };
    tokio::spawn(fut);
    let mut res = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    Ok(res)
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
    HeaderValue::from_str(&tungstenite::handshake::derive_accept_key(key.as_bytes()))
        .map_err(|_| bad("the Sec-WebSocket-Key header is malformed"))
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
    }
}
