//! Rooms, members, DMs, history over HTTP, and the user directory.

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    routing::{delete, get, post},
};
use serde::Deserialize;
use serde_json::json;

use super::extract::{Auth, Body, PathParams, QueryParams};
use crate::{
    app::AppState,
    chat::{CreateRoom, RoomUpdate},
    domain::{RoomId, Seq, UserId},
    error::ApiError,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/users", get(directory))
        .route("/api/rooms", get(search).post(create))
        .route("/api/rooms/{id}", get(details).patch(update))
        .route("/api/rooms/{id}/join", post(join))
        .route("/api/rooms/{id}/leave", post(leave))
        .route("/api/rooms/{id}/members", get(members).post(invite))
        .route("/api/rooms/{id}/members/{user}", delete(remove_member))
        .route("/api/rooms/{id}/messages", get(history))
        .route("/api/dms", post(open_dm))
}

type JsonResult = Result<Json<serde_json::Value>, ApiError>;

#[derive(Deserialize)]
struct Search {
    q: Option<String>,
}

async fn directory(State(s): State<AppState>, Auth(_actor): Auth, QueryParams(q): QueryParams<Search>) -> JsonResult {
    let users = s.chat.directory(q.q.as_deref()).await?;
    Ok(Json(json!({ "users": users })))
}

async fn search(State(s): State<AppState>, Auth(actor): Auth, QueryParams(q): QueryParams<Search>) -> JsonResult {
    let rooms: Vec<_> = s
        .chat
        .search_rooms(&actor, q.q.as_deref())
        .await?
        .into_iter()
        .map(|l| {
            json!({
                "id": l.room.id, "name": l.room.name, "topic": l.room.topic, "private": l.room.is_private,
                "member_count": l.member_count, "is_member": l.is_member, "banned": l.banned,
                "retention": l.room.retention,
            })
        })
        .collect();
    Ok(Json(json!({ "rooms": rooms })))
}

async fn create(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Body(form): Body<CreateRoom>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let room = s.chat.create_room(&actor, form).await?;
    Ok((StatusCode::CREATED, Json(json!({ "room": room }))))
}

async fn details(State(s): State<AppState>, Auth(actor): Auth, PathParams(id): PathParams<RoomId>) -> JsonResult {
    Ok(Json(json!({ "room": s.chat.room_details(&actor, id).await? })))
}

async fn update(
    State(s): State<AppState>,
    Auth(actor): Auth,
    PathParams(id): PathParams<RoomId>,
    Body(u): Body<RoomUpdate>,
) -> JsonResult {
    Ok(Json(json!({ "room": s.chat.update_room(&actor, id, u).await? })))
}

async fn join(State(s): State<AppState>, Auth(actor): Auth, PathParams(id): PathParams<RoomId>) -> JsonResult {
    Ok(Json(json!({ "room": s.chat.join(&actor, id).await? })))
}

async fn leave(
    State(s): State<AppState>,
    Auth(actor): Auth,
    PathParams(id): PathParams<RoomId>,
) -> Result<StatusCode, ApiError> {
    s.chat.leave(&actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn members(State(s): State<AppState>, Auth(actor): Auth, PathParams(id): PathParams<RoomId>) -> JsonResult {
    Ok(Json(json!({ "members": s.chat.members(&actor, id).await? })))
}

#[derive(Deserialize)]
struct InviteForm {
    username: String,
}

async fn invite(
    State(s): State<AppState>,
    Auth(actor): Auth,
    PathParams(id): PathParams<RoomId>,
    Body(f): Body<InviteForm>,
) -> Result<StatusCode, ApiError> {
    s.chat.invite(&actor, id, &f.username).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_member(
    State(s): State<AppState>,
    Auth(actor): Auth,
    PathParams((id, user)): PathParams<(RoomId, UserId)>,
) -> Result<StatusCode, ApiError> {
    s.chat.remove_member(&actor, id, user).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct HistoryQuery {
    before: Option<Seq>,
    limit: Option<u32>,
}

async fn history(
    State(s): State<AppState>,
    Auth(actor): Auth,
    PathParams(id): PathParams<RoomId>,
    QueryParams(q): QueryParams<HistoryQuery>,
) -> JsonResult {
    let (events, more) = s.chat.history(&actor, id, q.before, q.limit).await?;
    Ok(Json(json!({ "events": events, "more": more })))
}

#[derive(Deserialize)]
struct DmForm {
    user_id: UserId,
}

async fn open_dm(State(s): State<AppState>, Auth(actor): Auth, Body(f): Body<DmForm>) -> JsonResult {
    Ok(Json(json!({ "room": s.chat.open_dm(&actor, f.user_id).await? })))
}
