//! The WebSocket endpoint `GET /ws`: authenticates the handshake (session cookie with a
//! same-origin check, or a bearer token), sizes tungstenite's buffers for many idle
//! sockets, and hands the socket to [`session`]. The frame types live in [`protocol`].

pub mod protocol;
pub mod session;

use axum::{
    extract::{State, WebSocketUpgrade, ws::rejection::WebSocketUpgradeRejection},
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
};

use crate::{
    app::AppState,
    error::ApiError,
    http::extract::{Credentials, authenticate},
};

/// tungstenite's initial read buffer per connection (it grows for a larger frame).
/// Chat commands are a few hundred bytes; 1 KiB instead of DESIGN.md's 4 KiB saves
/// 3 KiB on every idle socket (measured with `rtm-bench capacity`, see BENCHMARKS.md).
const READ_BUFFER: usize = 1024;

pub async fn handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let creds = Credentials::from_headers(&headers, &state.cookie_name);
    if matches!(creds, Credentials::Cookie(_)) {
        // A browser sends cookies on a cross-site WebSocket handshake too: only the
        // Origin header tells our own pages from someone else's (CSWSH).
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        if origin != Some(state.chat.policy.origin.as_str()) {
            return Err(ApiError::bad_origin());
        }
    }
    let actor = authenticate(&state.chat, creds).await?;
    let upgrade = upgrade.map_err(|r| {
        ApiError::new(r.status(), "websocket_required", format!("GET /ws is a WebSocket endpoint: {}", r.body_text()))
    })?;
    let max = state.chat.policy.max_frame_bytes;
    let upgrade = upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(1024 * 1024)
        .max_message_size(max)
        .max_frame_size(max);
    let chat = state.chat.clone();
    let hub = state.hub.clone();
    Ok(upgrade
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "websocket upgrade failed"))
        .on_upgrade(move |socket| session::run(socket, chat, hub, actor))
        .into_response())
}
