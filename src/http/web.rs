//! The web client's files, embedded in the binary (rust-embed: read from web/ on disk
//! in debug builds, compiled in for release), so the app works on a LAN with nothing
//! else installed. Paths that are not files fall back to index.html (client routes).

use axum::{
    Router,
    http::{HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use rust_embed::RustEmbed;

use crate::app::AppState;

#[derive(RustEmbed)]
#[folder = "web/"]
struct Assets;

pub fn router() -> Router<AppState> {
    Router::new().fallback(serve)
}

async fn serve(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    if path.starts_with("api/") {
        return crate::error::ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API endpoint").into_response();
    }
    let (file, name) = match Assets::get(path).filter(|_| !path.is_empty()) {
        Some(f) => (f, path),
        None => match Assets::get("index.html") {
            Some(f) => (f, "index.html"),
            None => return (StatusCode::NOT_FOUND, "web client not built in").into_response(),
        },
    };
    let mime = mime_guess::from_path(name).first_or_octet_stream();
    let mut res = (StatusCode::OK, file.data.into_owned()).into_response();
    if let Ok(v) = HeaderValue::from_str(mime.as_ref()) {
        res.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    // Revalidate every time: a new server version must never run with an old client.
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}
