//! The admin's API (thin: every rule is in `chat::admin` and `chat::accounts`):
//! registration mode, invite links, the console's user and room lists, admin flags,
//! password reset links (and the public endpoint that spends them), ending sessions,
//! archiving and deleting rooms, server facts and the audit log.

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    routing::{delete, get, post, put},
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    accounts::UserView,
    extract::{Auth, Body, PathParams, QueryParams},
};
use crate::{
    app::AppState,
    chat::{NewAccount, page},
    config::RegistrationMode,
    domain::{RoomId, UserId},
    error::ApiError,
    store::{AdminRoom, AdminUser, AuditRow, UserSort},
    ws::protocol::Author,
};

type JsonResult = Result<Json<serde_json::Value>, ApiError>;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/admin/registration", put(set_registration))
        .route("/api/admin/invites", post(create_invite))
        .route("/api/admin/users", get(list_users).post(add_user))
        .route("/api/admin/users/{id}/disable", post(disable))
        .route("/api/admin/users/{id}/enable", post(enable))
        .route("/api/admin/users/{id}/promote", post(promote))
        .route("/api/admin/users/{id}/demote", post(demote))
        .route("/api/admin/users/{id}/reset-link", post(reset_link))
        .route("/api/admin/users/{id}/sessions", delete(end_sessions))
        .route("/api/admin/rooms", get(list_rooms))
        .route("/api/admin/rooms/{id}", delete(delete_room))
        .route("/api/admin/rooms/{id}/archive", post(archive))
        .route("/api/admin/rooms/{id}/unarchive", post(unarchive))
        .route("/api/admin/server", get(server))
        .route("/api/admin/audit", get(audit))
        .route("/api/password-reset", post(password_reset))
        .route("/api/password-reset/check", post(check_reset))
}

#[derive(Deserialize)]
struct ModeForm {
    mode: RegistrationMode,
}

async fn set_registration(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Body(f): Body<ModeForm>,
) -> Result<StatusCode, ApiError> {
    s.chat.set_registration_mode(&actor, f.mode).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn create_invite(
    State(s): State<AppState>,
    Auth(actor): Auth,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let code = s.chat.create_invite(&actor).await?;
    let url = format!("{}/?invite={code}", s.chat.policy.origin);
    Ok((StatusCode::CREATED, Json(json!({ "code": code, "url": url }))))
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum SortParam {
    LastSeen,
    Name,
    Created,
}

#[derive(Deserialize)]
struct UserListParams {
    q: Option<String>,
    sort: Option<SortParam>,
    offset: Option<i64>,
    limit: Option<i64>,
}

/// A user as the console lists it: the account view plus its times.
#[derive(Serialize)]
struct AdminUserView {
    #[serde(flatten)]
    user: UserView,
    last_seen: Option<i64>,
    created_at: i64,
}

impl From<AdminUser> for AdminUserView {
    fn from(a: AdminUser) -> Self {
        let created_at = a.user.created_at;
        AdminUserView { user: UserView::from(a.user), last_seen: a.last_seen, created_at }
    }
}

async fn list_users(
    State(s): State<AppState>,
    Auth(actor): Auth,
    QueryParams(p): QueryParams<UserListParams>,
) -> JsonResult {
    let sort = match p.sort.unwrap_or(SortParam::Name) {
        SortParam::LastSeen => UserSort::LastSeen,
        SortParam::Name => UserSort::Name,
        SortParam::Created => UserSort::Created,
    };
    let (offset, limit) = page(p.offset, p.limit);
    let (users, total) = s.chat.admin_users(Some(&actor), p.q.as_deref(), sort, offset, limit).await?;
    let users: Vec<AdminUserView> = users.into_iter().map(AdminUserView::from).collect();
    Ok(Json(json!({ "users": users, "total": total })))
}

async fn add_user(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Body(form): Body<NewAccount>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let user = s.chat.admin_add_user(Some(&actor), form).await?;
    Ok((StatusCode::CREATED, Json(json!({ "user": UserView::from(user) }))))
}

async fn disable(
    State(s): State<AppState>,
    Auth(actor): Auth,
    PathParams(id): PathParams<UserId>,
) -> Result<StatusCode, ApiError> {
    s.chat.admin_disable(Some(&actor), id, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn enable(
    State(s): State<AppState>,
    Auth(actor): Auth,
    PathParams(id): PathParams<UserId>,
) -> Result<StatusCode, ApiError> {
    s.chat.admin_disable(Some(&actor), id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn promote(
    State(s): State<AppState>,
    Auth(actor): Auth,
    PathParams(id): PathParams<UserId>,
) -> Result<StatusCode, ApiError> {
    s.chat.set_admin(Some(&actor), id, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn demote(
    State(s): State<AppState>,
    Auth(actor): Auth,
    PathParams(id): PathParams<UserId>,
) -> Result<StatusCode, ApiError> {
    s.chat.set_admin(Some(&actor), id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn reset_link(
    State(s): State<AppState>,
    Auth(actor): Auth,
    PathParams(id): PathParams<UserId>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let link = s.chat.issue_reset_link(Some(&actor), id).await?;
    let url = format!("{}/?reset={}", s.chat.policy.origin, link.code);
    Ok((StatusCode::CREATED, Json(json!({ "code": link.code, "url": url, "expires_at": link.expires_at }))))
}

async fn end_sessions(
    State(s): State<AppState>,
    Auth(actor): Auth,
    PathParams(id): PathParams<UserId>,
) -> Result<StatusCode, ApiError> {
    s.chat.end_user_sessions(Some(&actor), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct RoomListParams {
    q: Option<String>,
    offset: Option<i64>,
    limit: Option<i64>,
}

#[derive(Serialize)]
struct AdminRoomView {
    id: RoomId,
    name: String,
    private: bool,
    owner: Option<Author>,
    members: i64,
    archived: bool,
    read_only: bool,
    last_seq: i64,
    created_at: i64,
}

impl From<AdminRoom> for AdminRoomView {
    fn from(a: AdminRoom) -> Self {
        let r = a.room;
        AdminRoomView {
            id: r.id,
            name: r.name.unwrap_or_default(),
            private: r.is_private,
            owner: r.owner_id.zip(a.owner_username).map(|(id, username)| Author { id, username }),
            members: a.members,
            archived: r.archived,
            read_only: r.read_only,
            last_seq: r.last_seq,
            created_at: r.created_at,
        }
    }
}

async fn list_rooms(
    State(s): State<AppState>,
    Auth(actor): Auth,
    QueryParams(p): QueryParams<RoomListParams>,
) -> JsonResult {
    let (offset, limit) = page(p.offset, p.limit);
    let (rooms, total) = s.chat.admin_rooms(Some(&actor), p.q.as_deref(), offset, limit).await?;
    let rooms: Vec<AdminRoomView> = rooms.into_iter().map(AdminRoomView::from).collect();
    Ok(Json(json!({ "rooms": rooms, "total": total })))
}

async fn archive(
    State(s): State<AppState>,
    Auth(actor): Auth,
    PathParams(id): PathParams<RoomId>,
) -> Result<StatusCode, ApiError> {
    s.chat.set_archived(Some(&actor), id, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn unarchive(
    State(s): State<AppState>,
    Auth(actor): Auth,
    PathParams(id): PathParams<RoomId>,
) -> Result<StatusCode, ApiError> {
    s.chat.set_archived(Some(&actor), id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_room(
    State(s): State<AppState>,
    Auth(actor): Auth,
    PathParams(id): PathParams<RoomId>,
) -> Result<StatusCode, ApiError> {
    s.chat.delete_room(Some(&actor), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn server(State(s): State<AppState>, Auth(actor): Auth) -> JsonResult {
    let facts = s.chat.server_facts(Some(&actor), s.hub.connection_count()).await?;
    Ok(Json(serde_json::to_value(facts).unwrap_or_default()))
}

#[derive(Deserialize)]
struct AuditParams {
    before: Option<i64>,
    limit: Option<i64>,
}

#[derive(Serialize)]
struct AuditView {
    id: i64,
    ts: i64,
    actor: Option<Author>,
    action: String,
    target: String,
    detail: serde_json::Value,
}

impl From<AuditRow> for AuditView {
    fn from(r: AuditRow) -> Self {
        AuditView {
            id: r.id,
            ts: r.ts,
            actor: r.actor.map(|(id, username)| Author { id, username }),
            action: r.action,
            target: r.target,
            detail: serde_json::from_str(&r.detail).unwrap_or_else(|_| json!({})),
        }
    }
}

async fn audit(State(s): State<AppState>, Auth(actor): Auth, QueryParams(p): QueryParams<AuditParams>) -> JsonResult {
    let (_, limit) = page(None, p.limit);
    let entries: Vec<AuditView> =
        s.chat.audit_log(Some(&actor), p.before, limit).await?.into_iter().map(AuditView::from).collect();
    Ok(Json(json!({ "entries": entries })))
}

#[derive(Deserialize)]
struct ResetForm {
    code: String,
    password: String,
}

#[derive(Deserialize)]
struct ResetCheck {
    code: String,
}

/// Says whether a reset code would be taken, spending nothing; no sign-in.
async fn check_reset(State(s): State<AppState>, Body(f): Body<ResetCheck>) -> Result<StatusCode, ApiError> {
    s.chat.check_reset_code(&f.code).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Spends a reset link: no sign-in (the code is the credential); the Origin rule
/// applies as to every POST.
async fn password_reset(State(s): State<AppState>, Body(f): Body<ResetForm>) -> Result<StatusCode, ApiError> {
    s.chat.reset_password(&f.code, &f.password).await?;
    Ok(StatusCode::NO_CONTENT)
}
