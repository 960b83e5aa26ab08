//! Authentication as an extractor: a handler that takes [`Auth`] only runs for a signed-in
//! user (session cookie or `Authorization: Bearer` API token). Also the JSON body
//! extractor that turns serde's rejections into our error format.

use std::time::Duration;

use axum::{
    extract::{FromRequest, FromRequestParts, Request},
    http::{HeaderMap, StatusCode, header, request::Parts},
};
use serde::de::DeserializeOwned;

use crate::{
    app::AppState,
    chat::{Actor, Chat, ChatError},
    error::ApiError,
};

/// What the request carries to prove who it is.
pub enum Credentials {
    Cookie(String),
    Bearer(String),
    None,
}

impl Credentials {
    /// A bearer token wins over a cookie (a script's explicit choice).
    pub fn from_headers(headers: &HeaderMap, cookie_name: &str) -> Self {
        if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
            && let Some(t) = v.strip_prefix("Bearer ").map(str::trim)
            && !t.is_empty()
        {
            return Credentials::Bearer(t.to_string());
        }
        match cookie_value(headers, cookie_name) {
            Some(c) => Credentials::Cookie(c),
            None => Credentials::None,
        }
    }
}

/// The value of one cookie.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v.to_string())
}

pub async fn authenticate(chat: &Chat, creds: Credentials) -> Result<Actor, ApiError> {
    match creds {
        Credentials::Cookie(t) => Ok(chat.session_actor(&t).await?),
        Credentials::Bearer(t) => Ok(chat.token_actor(&t).await?),
        Credentials::None => Err(ChatError::Unauthenticated.into()),
    }
}

/// A signed-in user.
pub struct Auth(pub Actor);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let creds = Credentials::from_headers(&parts.headers, &state.cookie_name);
        Ok(Auth(authenticate(&state.chat, creds).await?))
    }
}

/// How long a client has to send a whole request body (`--http-body-secs`); the accept
/// loop puts it in every request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

/// When no [`BodyTimeout`] came with the request (a router driven without our accept
/// loop): the flag's default.
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// `Json<T>` with errors in our format (`bad_request` with serde's explanation). The
/// body must arrive within the [`BodyTimeout`], counted from when reading it starts, as
/// a whole (a client dripping one byte at a time does not reset it): else 408
/// `request_timeout`, and hyper closes the connection since the body was not read to
/// its end.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req.extensions().get::<BodyTimeout>().map_or(DEFAULT_BODY_TIMEOUT, |t| t.0);
        match tokio::time::timeout(limit, axum::Json::<T>::from_request(req, state)).await {
            Ok(Ok(axum::Json(v))) => Ok(Body(v)),
            Ok(Err(rej)) => Err(ApiError::bad_request(rej.body_text())),
            Err(_) => {
                tracing::debug!(timeout_ms = limit.as_millis() as u64, "request body too slow");
                Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    "the request body did not arrive in time",
                ))
            }
        }
    }
}

/// `Path<T>` with errors in our format.
pub struct PathParams<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(PathParams(v)),
            Err(rej) => Err(ApiError::bad_request(path_refusal(&rej))),
        }
    }
}

/// What a client can act on when a path does not parse: our paths hold numeric ids
/// (axum's own text names internal types and positions).
fn path_refusal(rej: &axum::extract::rejection::PathRejection) -> String {
    use axum::extract::{path::ErrorKind, rejection::PathRejection};
    if let PathRejection::FailedToDeserializePathParams(e) = rej
        && let ErrorKind::ParseErrorAtKey { value, .. }
        | ErrorKind::ParseErrorAtIndex { value, .. }
        | ErrorKind::ParseError { value, .. } = e.kind()
    {
        return format!("ids in the path are numbers; {value:?} is not one");
    }
    rej.body_text()
}

/// `Query<T>` with errors in our format.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(QueryParams(v)),
            Err(rej) => Err(ApiError::bad_request(rej.body_text())),
        }
    }
}
