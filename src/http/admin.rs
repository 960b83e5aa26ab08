//! The admin's API: registration mode, invite links, accounts.

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    routing::{get, post, put},
};
use serde::Deserialize;
use serde_json::json;

use super::{
    accounts::UserView,
    extract::{Auth, Body, PathParams},
};
use crate::{
    app::AppState,
    chat::{Actor, ChatError, NewAccount},
    config::RegistrationMode,
    domain::UserId,
    error::ApiError,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/admin/registration", put(set_registration))
        .route("/api/admin/invites", post(create_invite))
        .route("/api/admin/users", get(list_users).post(add_user))
        .route("/api/admin/users/{id}/disable", post(disable))
        .route("/api/admin/users/{id}/enable", post(enable))
}

fn admin(actor: &Actor) -> Result<(), ApiError> {
    if actor.user.is_admin { Ok(()) } else { Err(ChatError::Forbidden("only the admin may do this").into()) }
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

async fn list_users(State(s): State<AppState>, Auth(actor): Auth) -> Result<Json<serde_json::Value>, ApiError> {
    admin(&actor)?;
    let users: Vec<UserView> = s.chat.list_all_users(10_000).await?.into_iter().map(UserView::from).collect();
    Ok(Json(json!({ "users": users })))
}

async fn add_user(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Body(form): Body<NewAccount>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    admin(&actor)?;
    let user = s.chat.register(form, true).await?;
    Ok((StatusCode::CREATED, Json(json!({ "user": UserView::from(user) }))))
}

async fn disable(
    State(s): State<AppState>,
    Auth(actor): Auth,
    PathParams(id): PathParams<UserId>,
) -> Result<StatusCode, ApiError> {
    s.chat.admin_set_disabled(&actor, id, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn enable(
    State(s): State<AppState>,
    Auth(actor): Auth,
    PathParams(id): PathParams<UserId>,
) -> Result<StatusCode, ApiError> {
    s.chat.admin_set_disabled(&actor, id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}
