//! Moderation over HTTP (issue 15): room roles, bans, mutes, the user's blocks and the
//! default room. Thin: every rule is in `chat::moderation`.

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    routing::{delete, get, post, put},
};
use serde::Deserialize;
use serde_json::json;

use super::extract::{Auth, Body, PathParams};
use crate::{
    app::AppState,
    chat::{BanRequest, MuteRequest, RoleChange},
    domain::{RoomId, UserId},
    error::ApiError,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/rooms/{id}/members/{user}/role", put(set_role))
        .route("/api/rooms/{id}/bans", get(bans).post(ban))
        .route("/api/rooms/{id}/bans/{user}", delete(unban))
        .route("/api/rooms/{id}/mutes", post(mute))
        .route("/api/rooms/{id}/mutes/{user}", delete(unmute))
        .route("/api/me/blocks", get(blocks))
        .route("/api/me/blocks/{user}", put(block).delete(unblock))
        .route("/api/admin/default-room", put(set_default_room))
}

type JsonResult = Result<Json<serde_json::Value>, ApiError>;
type Done = Result<StatusCode, ApiError>;

async fn set_role(
    State(s): State<AppState>,
    Auth(actor): Auth,
    PathParams((id, user)): PathParams<(RoomId, UserId)>,
    Body(c): Body<RoleChange>,
) -> Done {
    s.chat.set_role(&actor, id, user, c).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn bans(State(s): State<AppState>, Auth(actor): Auth, PathParams(id): PathParams<RoomId>) -> JsonResult {
    Ok(Json(json!({ "users": s.chat.bans(&actor, id).await? })))
}

async fn ban(
    State(s): State<AppState>,
    Auth(actor): Auth,
    PathParams(id): PathParams<RoomId>,
    Body(b): Body<BanRequest>,
) -> Done {
    s.chat.ban(&actor, id, b.user).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn unban(
    State(s): State<AppState>,
    Auth(actor): Auth,
    PathParams((id, user)): PathParams<(RoomId, UserId)>,
) -> Done {
    s.chat.unban(&actor, id, user).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn mute(
    State(s): State<AppState>,
    Auth(actor): Auth,
    PathParams(id): PathParams<RoomId>,
    Body(m): Body<MuteRequest>,
) -> Done {
    s.chat.mute(&actor, id, m).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn unmute(
    State(s): State<AppState>,
    Auth(actor): Auth,
    PathParams((id, user)): PathParams<(RoomId, UserId)>,
) -> Done {
    s.chat.unmute(&actor, id, user).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn blocks(State(s): State<AppState>, Auth(actor): Auth) -> JsonResult {
    Ok(Json(json!({ "users": s.chat.blocks(&actor).await? })))
}

async fn block(State(s): State<AppState>, Auth(actor): Auth, PathParams(user): PathParams<UserId>) -> Done {
    s.chat.set_block(&actor, user, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn unblock(State(s): State<AppState>, Auth(actor): Auth, PathParams(user): PathParams<UserId>) -> Done {
    s.chat.set_block(&actor, user, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct DefaultRoom {
    room: Option<RoomId>,
}

async fn set_default_room(State(s): State<AppState>, Auth(actor): Auth, Body(d): Body<DefaultRoom>) -> Done {
    s.chat.set_default_room(&actor, d.room).await?;
    Ok(StatusCode::NO_CONTENT)
}
