//! Uploading and downloading files (PROTOCOL §2.8). Thin: the rules (limits, types,
//! images, membership) are `chat::files`; here the request body becomes a stream
//! with a stall deadline, and a file becomes a response with headers that keep an
//! uploaded HTML or SVG file from ever running in our origin: `nosniff`, a sandboxing
//! CSP, and `attachment` for anything but a verified image.

use std::io;

use axum::{
    Json, Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::extract::{Auth, BodyTimeout, PathParams, QueryParams};
use crate::{app::AppState, chat::files::FileMeta, domain::RoomId, error::ApiError};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/rooms/{id}/files", post(upload)).route("/api/files/{id}/{name}", get(download))
}

/// What every file answer carries (a 304 too).
const FILE_CSP: &str = "sandbox; default-src 'none'";
/// Files never change under an id, but membership does: a browser may reuse its copy
/// for five minutes; after that it asks again (and gets 404 if it left the room).
const FILE_CACHE: &str = "private, max-age=300";

#[derive(Deserialize)]
struct UploadQuery {
    name: Option<String>,
}

async fn upload(
    State(s): State<AppState>,
    auth: Result<Auth, ApiError>,
    room: Result<PathParams<RoomId>, ApiError>,
    query: Result<QueryParams<UploadQuery>, ApiError>,
    headers: HeaderMap,
    req: Request,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    // A body may take as long as it needs, but must keep coming: each piece within
    // the body timeout (`--http-body-secs`), or the upload fails.
    let stall = req.extensions().get::<BodyTimeout>().map_or(std::time::Duration::from_secs(10), |t| t.0);
    let data = req.into_body().into_data_stream();
    let mut body = futures_util::stream::unfold(Some(data), move |state| async move {
        let mut d = state?;
        match tokio::time::timeout(stall, d.next()).await {
            Ok(Some(Ok(b))) => Some((Ok(b), Some(d))),
            Ok(Some(Err(e))) => Some((Err(io::Error::other(e)), None)),
            Ok(None) => None,
            Err(_) => Some((Err(io::Error::new(io::ErrorKind::TimedOut, "the upload stalled")), None)),
        }
    })
    // Fused: the refusal below may read on from where the upload's reading ended.
    .fuse()
    .boxed();
    let answer = async {
        let (Auth(actor), PathParams(room), QueryParams(q)) = (auth?, room?, query?);
        let name =
            q.name.filter(|n| !n.is_empty()).ok_or_else(|| ApiError::bad_request("the name parameter is required"))?;
        let declared = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        Ok::<_, ApiError>(s.chat.upload_file(&actor, room, &name, declared, length, (&mut body).boxed()).await?)
    }
    .await;
    match answer {
        Ok(file) => Ok((StatusCode::CREATED, Json(json!({ "file": file })))),
        Err(e) => {
            // A refusal usually comes before the body was read (too large, over quota,
            // not signed in) while its sender is still sending. Were the connection
            // closed on it, a proxy that streams uploads (nginx, docs/DEPLOY.md) would
            // fail to write the rest, answer 502 instead of our error and take this
            // node out of its rotation. So the answer goes at once, and the rest of
            // the body is read and thrown away beside it, up to what an upload may be.
            let limit = s.chat.policy.files.max_file_bytes.saturating_add(DRAIN_SLACK);
            if length.is_none_or(|n| n <= limit) {
                tokio::spawn(async move { drain(&mut body, limit).await });
            }
            Err(e)
        }
    }
}

/// What a refused upload's body may exceed the file limit by and still be read to its
/// end (nginx's `client_max_body_size` in docs/DEPLOY.md is the limit plus 1 MiB).
const DRAIN_SLACK: u64 = 2 << 20;

/// Reads and drops what is left of a body, at most `limit` bytes (the stall deadline
/// of the stream ends a body that stops coming).
async fn drain(body: &mut futures_util::stream::BoxStream<'static, io::Result<bytes::Bytes>>, limit: u64) {
    let mut read = 0u64;
    while let Some(Ok(chunk)) = body.next().await {
        read = read.saturating_add(chunk.len() as u64);
        if read > limit {
            return;
        }
    }
}

#[derive(Deserialize)]
struct DownloadQuery {
    download: Option<String>,
}

async fn download(
    State(s): State<AppState>,
    Auth(actor): Auth,
    PathParams((id, name)): PathParams<(String, String)>,
    QueryParams(q): QueryParams<DownloadQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let meta = s.chat.file_meta(&actor, &id, name == "thumb").await?;
    let force = q.download.as_deref().is_some_and(|v| v != "0");
    let mut h = file_headers(&meta, force);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == meta.etag || t.trim() == "*"));
    if fresh {
        return Ok((StatusCode::NOT_MODIFIED, h).into_response());
    }
    let (reader, len) = s.chat.open_file(&meta).await?;
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(reader, 64 * 1024));
    Ok((StatusCode::OK, h, body).into_response())
}

fn file_headers(meta: &FileMeta, force_download: bool) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(meta.serve_type));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(FILE_CSP));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(FILE_CACHE));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    if let Ok(v) = HeaderValue::from_str(&meta.etag) {
        h.insert(header::ETAG, v);
    }
    let inline = meta.inline_ok && !force_download;
    let disposition = crate::domain::files::content_disposition(&meta.file.name, inline);
    // Always ASCII (the name is percent-encoded), so this cannot fail; if it did, a
    // bare `attachment` is still safe.
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).unwrap_or(HeaderValue::from_static("attachment")),
    );
    h
}
