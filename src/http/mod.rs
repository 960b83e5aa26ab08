//! The JSON API and the web client's files. One `router()` per feature, merged here;
//! authentication is the [`extract::Auth`] extractor; every state-changing browser
//! request passes the same-origin check in [`csrf`].

pub mod accounts;
pub mod admin;
pub mod deadline;
pub mod extract;
pub mod files;
pub mod moderation;
pub mod rooms;
pub mod search;
pub mod web;

use axum::{
    Json, Router,
    extract::{Request, State},
    http::{HeaderValue, Method, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;

use crate::{app::AppState, error::ApiError};

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(accounts::router())
        .merge(rooms::router())
        .merge(moderation::router())
        .merge(search::router())
        .merge(files::router())
        .merge(admin::router())
        .layer(middleware::from_fn_with_state(state.clone(), csrf));
    Router::new()
        .merge(api)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/ws", get(crate::ws::handler))
        .merge(crate::ws::session::echo::router(state.test_echo_route))
        .merge(web::router())
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn(no_store))
        .with_state(state)
}

/// Liveness: answers while the process runs, whatever the database or the bus say
/// (`bus` is informational). A failing dependency is `/readyz`'s business: restarting
/// a node because PostgreSQL is away would not bring PostgreSQL back.
async fn healthz(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "connections": state.hub.connection_count(), "bus": state.chat.bus.health() }))
}

/// Readiness: the database answers (within a second), the bus is reachable, and the
/// node is not draining. A load balancer stops sending new connections on 503.
async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let unready = |why: &str| ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "unavailable", why);
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(unready("draining: this node is shutting down"));
    }
    let bus = state.chat.check_health().await.map_err(|_| unready("the database does not answer"))?;
    if bus == "down" {
        return Err(unready("the bus (Redis) is unreachable"));
    }
    Ok(Json(json!({ "status": "ready", "database": "ok", "bus": bus })))
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this path does not take that method",
    )
}

/// Refuses state-changing requests that a browser sent from another site. Browsers send
/// `Origin` on every cross-site POST/PATCH/PUT/DELETE, so a mismatch means a forged
/// request riding on the victim's cookie. Requests with a bearer token carry no
/// ambient credential and are not checked; scripts without `Origin` are not browsers.
async fn csrf(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let bearer = matches!(
        extract::Credentials::from_headers(req.headers(), &state.cookie_name),
        extract::Credentials::Bearer(_)
    );
    if !safe && !bearer {
        let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok());
        let cross_site = req.headers().get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("cross-site");
        let bad = match origin {
            Some(o) => o != state.chat.policy.origin,
            None => cross_site,
        };
        if bad {
            tracing::warn!(path = %req.uri().path(), "cross-origin request refused");
            return ApiError::bad_origin().into_response();
        }
    }
    next.run(req).await
}

/// Every API answer is about someone (accounts, tokens, rooms, messages, admin
/// lists): no browser or proxy cache may keep it.
async fn no_store(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let mut res = next.run(req).await;
    // Downloads of files say their own caching (`http/files.rs`).
    if api && !res.headers().contains_key(header::CACHE_CONTROL) {
        res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// Defence in depth for the web client: no inline script, no framing, no sniffing.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    // An uploaded file's answer keeps its stricter sandbox (`http/files.rs`).
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
            ),
        );
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}
