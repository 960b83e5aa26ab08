//! Sign-up, sign-in, sign-out, the profile, password changes and API tokens.

use std::net::SocketAddr;

use axum::{
    Json, Router,
    extract::{ConnectInfo, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{delete, get, post},
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::extract::{Auth, Body, PathParams, cookie_value};
use crate::{
    app::AppState,
    chat::{ChatError, NewAccount, ProfileUpdate},
    error::ApiError,
    store::User,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/config", get(config))
        .route("/api/register", post(register))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/me", get(me).patch(update_me))
        .route("/api/me/password", post(change_password))
        .route("/api/me/tokens", get(list_tokens).post(create_token))
        .route("/api/me/tokens/{id}", delete(revoke_token))
}

/// An account as the API shows it to its owner.
#[derive(Serialize)]
pub struct UserView {
    pub id: i64,
    pub username: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub is_admin: bool,
    pub disabled: bool,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        UserView {
            id: u.id,
            username: u.username,
            first_name: u.first_name,
            last_name: u.last_name,
            email: u.email,
            is_admin: u.is_admin,
            disabled: u.disabled,
        }
    }
}

fn session_cookie(state: &AppState, token: &str) -> HeaderValue {
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    let v = format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        state.cookie_name,
        state.chat.policy.session_max_ms / 1000
    );
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(""))
}

fn clear_cookie(state: &AppState) -> HeaderValue {
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    let v = format!("{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}", state.cookie_name);
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(""))
}

/// The client's address for rate limits: the peer, or behind a trusted proxy the last
/// address of `X-Forwarded-For` (the one that proxy saw).
fn client_ip(state: &AppState, addr: SocketAddr, headers: &HeaderMap) -> std::net::IpAddr {
    if state.trust_proxy
        && let Some(ip) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok())
    {
        return ip;
    }
    addr.ip()
}

/// Sign-in, sign-up and password attempts per client address: this node's limiter,
/// then the budget all nodes share (several nodes), so spreading attempts over nodes
/// buys nothing.
async fn check_rate(state: &AppState, addr: SocketAddr, headers: &HeaderMap) -> Result<(), ApiError> {
    let ip = crate::domain::rate_key(client_ip(state, addr, headers));
    state.auth_limiter.check_key(&ip).map_err(|_| ApiError::from(ChatError::RateLimited))?;
    state.chat.check_shared_auth_budget(ip).await.map_err(ApiError::from)
}

async fn config(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(json!({
        "registration": state.chat.registration_mode().as_str(),
        "max_message_chars": state.chat.policy.max_message_chars,
        "max_file_bytes": state.chat.policy.files.max_file_bytes,
        "default_room": state.chat.default_room_in_effect().await?,
    })))
}

async fn register(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Body(form): Body<NewAccount>,
) -> Result<Response, ApiError> {
    check_rate(&state, addr, &headers).await?;
    let user = state.chat.register(form, false).await?;
    let token = state.chat.start_session(user.id).await?;
    let device = state.chat.device_cookie(user.id).await;
    let mut res = (StatusCode::CREATED, Json(json!({ "user": UserView::from(user) }))).into_response();
    res.headers_mut().insert(header::SET_COOKIE, session_cookie(&state, &token));
    if let Some(d) = device {
        res.headers_mut().append(header::SET_COOKIE, device_cookie(&state, &d));
    }
    Ok(res)
}

#[derive(Deserialize)]
struct LoginForm {
    login: String,
    password: String,
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Body(form): Body<LoginForm>,
) -> Result<Response, ApiError> {
    check_rate(&state, addr, &headers).await?;
    let device = cookie_value(&headers, &device_cookie_name(&state));
    let out = match state.chat.login(&form.login, &form.password, device.as_deref()).await {
        Ok(out) => out,
        Err(ChatError::SignInDelayed(secs)) => return Ok(sign_in_delayed(secs)),
        Err(e) => return Err(e.into()),
    };
    let mut res = Json(json!({ "user": UserView::from(out.user) })).into_response();
    res.headers_mut().insert(header::SET_COOKIE, session_cookie(&state, &out.token));
    if let Some(d) = out.device {
        res.headers_mut().append(header::SET_COOKIE, device_cookie(&state, &d));
    }
    Ok(res)
}

/// The known-device cookie (`rtm_device`, `__Host-rtm_device` over https), named after
/// the session cookie.
fn device_cookie_name(state: &AppState) -> String {
    state.cookie_name.replace("rtm_session", "rtm_device")
}

/// Lives about a year, and is renewed at every sign-in: it only exempts this browser
/// from the account's sign-in back-off (`auth::device`).
fn device_cookie(state: &AppState, value: &str) -> HeaderValue {
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    let v = format!("{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age=31536000{secure}", device_cookie_name(state));
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(""))
}

/// 429 `sign_in_delayed` with when to try again, as `Retry-After` and in the body.
fn sign_in_delayed(secs: u64) -> Response {
    let e = ChatError::SignInDelayed(secs);
    let body = json!({ "error": { "code": e.code(), "message": e.public_message(), "retry_after": secs } });
    let mut res = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    res
}

/// Ends the session on the server (if any) and clears the cookie; succeeds either way.
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(token) = cookie_value(&headers, &state.cookie_name) {
        match state.chat.session_actor(&token).await {
            Ok(actor) => state.chat.logout(&actor).await?,
            Err(ChatError::Internal(e)) => return Err(ChatError::Internal(e).into()),
            Err(_) => {}
        }
    }
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut().insert(header::SET_COOKIE, clear_cookie(&state));
    Ok(res)
}

async fn me(Auth(actor): Auth) -> Json<serde_json::Value> {
    Json(json!({ "user": UserView::from(actor.user) }))
}

async fn update_me(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Auth(actor): Auth,
    Body(change): Body<ProfileUpdate>,
) -> Result<Json<serde_json::Value>, ApiError> {
    // An email change answers `email_taken` for addresses in use, and checks a
    // password: limited like sign-ups, so it cannot probe who has an account.
    if change.email.is_some() {
        check_rate(&state, addr, &headers).await?;
    }
    let user = state.chat.update_profile(&actor, change).await?;
    Ok(Json(json!({ "user": UserView::from(user) })))
}

#[derive(Deserialize)]
struct PasswordForm {
    current_password: String,
    new_password: String,
}

async fn change_password(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Auth(actor): Auth,
    Body(form): Body<PasswordForm>,
) -> Result<StatusCode, ApiError> {
    // Each attempt costs two password hashes: limited like sign-ins.
    check_rate(&state, addr, &headers).await?;
    state.chat.change_password(&actor, &form.current_password, &form.new_password).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct TokenForm {
    name: String,
}

async fn create_token(
    State(state): State<AppState>,
    Auth(actor): Auth,
    Body(form): Body<TokenForm>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let (id, name, token) = state.chat.create_api_token(actor.user.id, &form.name).await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id, "name": name, "token": token }))))
}

async fn list_tokens(State(state): State<AppState>, Auth(actor): Auth) -> Result<Json<serde_json::Value>, ApiError> {
    let tokens: Vec<_> = state
        .chat
        .list_api_tokens(&actor)
        .await?
        .into_iter()
        .map(|t| json!({ "id": t.id, "name": t.name, "created_at": t.created_at, "last_used_at": t.last_used_at }))
        .collect();
    Ok(Json(json!({ "tokens": tokens })))
}

async fn revoke_token(
    State(state): State<AppState>,
    Auth(actor): Auth,
    PathParams(id): PathParams<i64>,
) -> Result<StatusCode, ApiError> {
    state.chat.revoke_api_token(&actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
