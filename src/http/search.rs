//! `GET /api/search`: full-text search over the messages the caller may read
//! (docs/PROTOCOL.md §2.6).

use axum::{Json, Router, extract::State, routing::get};
use serde::Deserialize;
use serde_json::json;

use super::extract::{Auth, QueryParams};
use crate::{app::AppState, domain::RoomId, error::ApiError};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/search", get(search))
}

#[derive(Deserialize)]
struct SearchParams {
    #[serde(default)]
    q: String,
    room: Option<RoomId>,
    author: Option<String>,
    // Signed, so that a negative value is clamped like any other out of range.
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn search(
    State(s): State<AppState>,
    Auth(actor): Auth,
    QueryParams(p): QueryParams<SearchParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (results, more) = s.chat.search(&actor, &p.q, p.room, p.author.as_deref(), p.limit, p.offset).await?;
    Ok(Json(json!({ "results": results, "more": more })))
}
