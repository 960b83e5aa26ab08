//! One API error type for HTTP: maps each `ChatError` to a status and a stable code in
//! the JSON body `{"error": {"code", "message"}}`. Internal details are logged, inside
//! the request's span, and never sent to the client.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::chat::ChatError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }

    pub fn bad_origin() -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "bad_origin", "requests from another site are refused")
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        let status = match &e {
            ChatError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ChatError::Taken(_) | ChatError::LookAlike(_) => StatusCode::CONFLICT,
            ChatError::LastAdmin => StatusCode::CONFLICT,
            ChatError::InvalidResetCode => StatusCode::BAD_REQUEST,
            ChatError::RoomArchived => StatusCode::FORBIDDEN,
            ChatError::BadCredentials | ChatError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ChatError::Disabled
            | ChatError::RegistrationClosed
            | ChatError::InvalidInvite
            | ChatError::Forbidden(_)
            | ChatError::NotMember
            | ChatError::SubjectNotMember
            | ChatError::Muted(_)
            | ChatError::ReadOnly
            | ChatError::Banned
            | ChatError::Blocked => StatusCode::FORBIDDEN,
            ChatError::NotFound(_) => StatusCode::NOT_FOUND,
            ChatError::RateLimited | ChatError::SignInDelayed(_) => StatusCode::TOO_MANY_REQUESTS,
            ChatError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ChatError::File(f) => StatusCode::from_u16(f.status()).unwrap_or(StatusCode::BAD_REQUEST),
            ChatError::Internal(detail) => {
                tracing::error!(error = %detail, "request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError { status, code: e.code(), message: e.public_message() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": { "code": self.code, "message": self.message } }))).into_response()
    }
}
