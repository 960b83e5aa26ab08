//! The web client's files, embedded in the binary by `build.rs` (every file under
//! web/), so the app works on a LAN with nothing else installed. Each file is stored
//! as is and, where it shrinks, gzip- and brotli-compressed at build time; a request
//! gets the best form its `Accept-Encoding` allows, with a strong ETag (a hash of the
//! bytes), and `If-None-Match` with that tag gets `304` and no body. Paths that are not
//! files fall back to index.html (client routes).
//!
//! Every file is `Cache-Control: no-cache` (stored, but revalidated before use): the
//! URLs carry no content hash (the ES modules import each other by plain name), so a
//! longer lifetime would let a new server run with an old module. A reload therefore
//! costs one conditional request per file, each answered `304` with headers only.

use std::{collections::HashMap, sync::LazyLock};

use axum::{
    Router,
    body::Body,
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};

use crate::app::AppState;

/// One embedded file (see build.rs).
pub struct Asset {
    /// Path under web/, e.g. `js/api.js`.
    pub path: &'static str,
    /// Strong validator of the raw bytes, quoted (`"…"`).
    pub etag: &'static str,
    pub raw: &'static [u8],
    /// Compressed forms, absent when compressing saves nothing worth it.
    pub gzip: Option<&'static [u8]>,
    pub br: Option<&'static [u8]>,
}

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

static BY_PATH: LazyLock<HashMap<&'static str, &'static Asset>> =
    LazyLock::new(|| ASSETS.iter().map(|a| (a.path, a)).collect());

pub fn router() -> Router<AppState> {
    Router::new().fallback(serve)
}

/// A content coding of a file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Coding {
    Identity,
    Gzip,
    Br,
}

impl Coding {
    /// The suffix that keeps each coding's ETag distinct (a strong validator names
    /// exact bytes, and the coded bytes differ).
    fn tag_suffix(self) -> &'static str {
        match self {
            Coding::Identity => "",
            Coding::Gzip => "-gz",
            Coding::Br => "-br",
        }
    }
}

/// Whether `accept` (an `Accept-Encoding` value) allows `coding`: named with a
/// weight above 0, or not named and allowed by a `*` (RFC 9110 §12.5.3).
fn accepts(accept: &str, coding: &str) -> bool {
    // (allowed by its own entry, allowed by `*`)
    let (mut named, mut any) = (None, None);
    for part in accept.split(',') {
        let mut it = part.split(';');
        let name = it.next().unwrap_or("").trim();
        let refused = it.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")).and_then(|q| q.trim().parse::<f32>().ok())
                == Some(0.0)
        });
        if name.eq_ignore_ascii_case(coding) {
            named = Some(!refused);
        } else if name == "*" {
            any = Some(!refused);
        }
    }
    named.or(any).unwrap_or(false)
}

/// The best form of `asset` that the client accepts: brotli, then gzip, then raw.
fn choose(asset: &Asset, headers: &HeaderMap) -> (Coding, &'static [u8]) {
    let accept = headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("");
    if let Some(b) = asset.br.filter(|_| accepts(accept, "br")) {
        return (Coding::Br, b);
    }
    if let Some(g) = asset.gzip.filter(|_| accepts(accept, "gzip")) {
        return (Coding::Gzip, g);
    }
    (Coding::Identity, asset.raw)
}

/// The ETag of one coding of an asset.
fn etag(asset: &Asset, coding: Coding) -> String {
    let inner = asset.etag.trim_matches('"');
    format!("\"{inner}{}\"", coding.tag_suffix())
}

/// Whether `If-None-Match` names this file (in any of its codings: they carry the
/// same content) or is `*`.
fn not_modified(asset: &Asset, headers: &HeaderMap) -> bool {
    let inner = asset.etag.trim_matches('"');
    headers.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).any(|v| {
        v.split(',').any(|t| {
            let t = t.trim();
            let t = t.strip_prefix("W/").unwrap_or(t).trim_matches('"');
            t == "*" || t.strip_suffix("-gz").or_else(|| t.strip_suffix("-br")).unwrap_or(t) == inner
        })
    })
}

async fn serve(uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().trim_start_matches('/');
    if path.starts_with("api/") {
        return crate::error::ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API endpoint").into_response();
    }
    let asset = match BY_PATH.get(path).filter(|_| !path.is_empty()).or_else(|| BY_PATH.get("index.html")) {
        Some(a) => *a,
        None => return (StatusCode::NOT_FOUND, "web client not built in").into_response(),
    };
    let (coding, bytes) = choose(asset, &headers);
    let tag = etag(asset, coding);
    let mut res = if not_modified(asset, &headers) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut res = Response::new(Body::from(bytes));
        let mime = mime_guess::from_path(asset.path).first_or_octet_stream();
        if let Ok(v) = HeaderValue::from_str(mime.as_ref()) {
            res.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        match coding {
            Coding::Identity => {}
            Coding::Gzip => {
                res.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            Coding::Br => {
                res.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
            }
        }
        res
    };
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    // Revalidate every time: a new server version must never run with an old client.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_is_parsed_with_q_values() {
        assert!(accepts("gzip, deflate, br, zstd", "br"));
        assert!(accepts("gzip;q=1.0, br;q=0.5", "br"));
        assert!(!accepts("gzip, br;q=0", "br"));
        assert!(accepts("gzip, br;q=0", "gzip"));
        assert!(!accepts("identity", "gzip"));
        assert!(!accepts("", "gzip"));
        // `*` stands for every coding not named; a named one keeps its own weight.
        assert!(accepts("*", "br"));
        assert!(accepts("gzip;q=0, *", "br"));
        assert!(!accepts("gzip;q=0, *", "gzip"));
        assert!(!accepts("*;q=0", "gzip"));
        assert!(accepts("br, *;q=0", "br"));
    }

    #[test]
    fn every_file_is_embedded_with_a_strong_tag_and_the_index_compresses() {
        let index = BY_PATH.get("index.html").expect("index.html is embedded");
        assert!(index.etag.starts_with('"') && index.etag.ends_with('"') && index.etag.len() > 10);
        let br = index.br.expect("HTML compresses with brotli");
        let gz = index.gzip.expect("HTML compresses with gzip");
        assert!(br.len() < gz.len() && gz.len() < index.raw.len());
        // The service worker knows this build's version and its shell.
        let sw = std::str::from_utf8(BY_PATH.get("sw.js").expect("sw.js is embedded").raw).expect("utf-8");
        assert!(sw.contains(&format!("const VERSION = '{VERSION}';")), "{sw}");
        assert!(sw.contains("\"/app.js\""), "{sw}");
    }
}
