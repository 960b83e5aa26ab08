//! Files and images (issue 13, docs/PROTOCOL.md §2.8, §3.9) over real HTTP and
//! WebSockets on every backend (SQLite, PostgreSQL, MariaDB, two nodes sharing one
//! files directory): upload, attach, receive on another client (another node),
//! download with membership checked on every request, hostile uploads and the headers
//! they are served with, limits, and blobs leaving the disk with their messages
//! (retention trim, keep-days pruning, delete action, pending expiry, the ephemeral
//! switch), uploads through nginx, and files surviving a restart.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::*;
use rtm::ws::protocol::{Attachment, ServerFrame};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The files directory every node of the test shares (a cluster's second node gets a
/// data dir of its own, so the shared volume is named explicitly).
fn shared_files(c: &mut rtm::config::Config) {
    c.files_dir = Some(c.data_dir.join("files"));
}

async fn upload(c: &Client, room: i64, name: &str, ty: &str, bytes: Vec<u8>) -> (u16, Value) {
    let q: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
    let r = c
        .http
        .post(format!("{}/api/rooms/{room}/files?name={q}", c.base))
        .header("content-type", ty)
        .body(bytes)
        .send()
        .await
        .expect("upload");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn upload_ok(c: &Client, room: i64, name: &str, ty: &str, bytes: Vec<u8>) -> Attachment {
    let (s, body) = upload(c, room, name, ty, bytes).await;
    assert_eq!(s, 201, "upload of {name}: {body}");
    serde_json::from_value(body["file"].clone()).expect("an attachment object")
}

struct Got {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Got {
    fn h(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

async fn fetch(c: &Client, path: &str) -> Got {
    fetch_with(c, path, None).await
}

async fn fetch_with(c: &Client, path: &str, if_none_match: Option<&str>) -> Got {
    let mut req = c.http.get(format!("{}{path}", c.base));
    if let Some(t) = if_none_match {
        req = req.header("if-none-match", t);
    }
    let r = req.send().await.expect("download");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    Got { status, headers, body: r.bytes().await.expect("body").to_vec() }
}

/// Sends `text` with attachments; the ack's seq (None: duplicate without seq).
async fn send_files(ws: &mut Ws, room: i64, cid: &str, text: &str, ids: &[&str]) -> ServerFrame {
    ws.request(json!({"type": "send", "room": room, "client_id": cid, "text": text, "attachments": ids})).await
}

fn ack_seq(f: &ServerFrame) -> i64 {
    match f {
        ServerFrame::Ack { seq: Some(s), .. } => *s,
        other => panic!("expected an ack with a seq, got {other:?}"),
    }
}

fn error_code(f: &ServerFrame) -> &str {
    match f {
        ServerFrame::Error { code, .. } => code,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("png");
    out
}

fn gif(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbaImage::from_pixel(w, h, image::Rgba([200, 10, 10, 255]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgba8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Gif)
        .expect("gif");
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for b in data {
        c ^= u32::from(*b);
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
    out
}

/// A tiny PNG whose (valid, CRC-checked) header claims 100000 × 100000 pixels: 40 GB
/// of RGBA if a decoder believed it.
fn png_bomb() -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(png_chunk(b"IHDR", &ihdr));
    out.extend(png_chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
    out.extend(png_chunk(b"IEND", &[]));
    out
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The blobs in a files directory (staging and hidden ones left out).
fn blobs_on_disk(dir: &Path) -> BTreeSet<String> {
    fn walk(p: &Path, out: &mut BTreeSet<String>) {
        let Ok(rd) = std::fs::read_dir(p) else { return };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if path.is_dir() {
                if name != "tmp" && name != "trash" {
                    walk(&path, out);
                }
            } else if name.len() == 64 {
                out.insert(name);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, &mut out);
    out
}

/// Waits (the sweeper runs right after a commit, at most every 500 ms) until the
/// directory holds exactly `want`.
async fn wait_for_blobs(dir: &Path, want: &BTreeSet<String>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let now = blobs_on_disk(dir);
        if now == *want {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("files directory holds {now:?}, expected {want:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn files_dir(srv: &TestServer) -> std::path::PathBuf {
    srv.state.chat.policy.files.dir.clone()
}

async fn upload_send_receive_download(b: Backend) {
    let srv = TestServer::start_with(b, shared_files).await;
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let carl = srv.user("carl").await;
    let room = ann.create_room("pictures", json!({})).await;
    assert_eq!(bob.post(&format!("/api/rooms/{room}/join"), json!({})).await.0, 200);
    let mut wa = ann.ws().await;
    let mut wb = bob.ws().await;

    let bytes = png(640, 480);
    let a = upload_ok(&ann, room, "holiday.png", "image/png", bytes.clone()).await;
    assert_eq!(a.id.len(), 32);
    assert_eq!((a.name.as_str(), a.size, a.mime.as_str()), ("holiday.png", bytes.len() as i64, "image/png"));
    let dims = a.image.expect("a verified image");
    assert_eq!((dims.width, dims.height), (640, 480));
    assert_eq!(a.url, format!("/api/files/{}/holiday.png", a.id));
    assert_eq!(a.thumb_url.as_deref(), Some(format!("/api/files/{}/thumb", a.id).as_str()));

    // Pending: only its uploader sees it; nobody else can attach it.
    assert_eq!(fetch(&ann, &a.url).await.status, 200);
    let g = fetch(&bob, &a.url).await;
    assert_eq!((g.status, g.json()["error"]["code"].as_str()), (404, Some("file_not_found")));
    let f = send_files(&mut wb, room, "b-1", "mine?", &[&a.id]).await;
    assert_eq!(error_code(&f), "attachment_not_found");

    // Sent with a text; the other client (on the other node in a cluster) gets it.
    let f = send_files(&mut wa, room, "a-1", "look", &[&a.id]).await;
    let seq = ack_seq(&f);
    let (f, _) = wb.recv_until(|f| matches!(f, ServerFrame::Message(e) if e.room == room && e.seq == Some(seq))).await;
    let ServerFrame::Message(e) = f else { unreachable!() };
    assert_eq!((e.text.as_str(), e.attachments.clone()), ("look", vec![a.clone()]));
    // A retried send is a duplicate, not an error; the file cannot be sent again.
    let f = send_files(&mut wa, room, "a-1", "look", &[&a.id]).await;
    assert!(matches!(f, ServerFrame::Ack { duplicate: true, .. }), "{f:?}");
    let f = send_files(&mut wa, room, "a-2", "again", &[&a.id]).await;
    assert_eq!(error_code(&f), "attachment_not_found");
    // Attachments alone (no text) are a message; neither is not.
    let only = upload_ok(&ann, room, "notes.txt", "text/plain", b"just a file".to_vec()).await;
    let f = send_files(&mut wa, room, "a-3", "", &[&only.id]).await;
    ack_seq(&f);
    let f = send_files(&mut wa, room, "a-4", "", &[]).await;
    assert!(matches!(f, ServerFrame::Error { .. }), "{f:?}");

    // History and resume carry the attachment objects.
    let events = match wb.request(json!({"type": "history", "room": room, "limit": 50})).await {
        ServerFrame::History { events, .. } => events,
        other => panic!("{other:?}"),
    };
    let kept = events.iter().find(|e| e.seq == Some(seq)).expect("in history");
    assert_eq!(kept.attachments, vec![a.clone()]);
    let resumed = match wb.request(json!({"type": "resume", "room": room, "after": seq - 1})).await {
        ServerFrame::Resumed { events, .. } => events,
        other => panic!("{other:?}"),
    };
    assert_eq!(resumed.iter().find(|e| e.seq == Some(seq)).expect("resumed").attachments, vec![a.clone()]);

    // A member downloads it, with safe headers and a validator.
    let g = fetch(&bob, &a.url).await;
    assert_eq!(g.status, 200);
    assert_eq!(g.body, bytes);
    assert_eq!(g.h("content-type"), "image/png");
    assert_eq!(g.h("x-content-type-options"), "nosniff");
    assert_eq!(g.h("content-security-policy"), "sandbox; default-src 'none'");
    assert!(g.h("content-disposition").starts_with("inline;"), "{}", g.h("content-disposition"));
    assert!(g.h("cache-control").starts_with("private"), "{}", g.h("cache-control"));
    let etag = g.h("etag").to_string();
    assert!(!etag.is_empty());
    let g304 = fetch_with(&bob, &a.url, Some(&etag)).await;
    assert_eq!((g304.status, g304.body.len()), (304, 0));
    let forced = fetch(&bob, &format!("{}?download=1", a.url)).await;
    assert!(forced.h("content-disposition").starts_with("attachment;"));
    // The thumbnail: a real image, longest side 320.
    let t = fetch(&bob, a.thumb_url.as_deref().unwrap_or("")).await;
    assert_eq!((t.status, t.h("content-type")), (200, "image/png"));
    assert_eq!(t.h("x-content-type-options"), "nosniff");
    let thumb = image::load_from_memory(&t.body).expect("the thumbnail decodes");
    assert_eq!((thumb.width(), thumb.height()), (320, 240));
    // A picture smaller than that is its own thumbnail, never scaled up.
    let tiny = upload_ok(&ann, room, "tiny.png", "image/png", png(4, 3)).await;
    let t = fetch(&ann, tiny.thumb_url.as_deref().unwrap_or("")).await;
    let thumb = image::load_from_memory(&t.body).expect("the thumbnail decodes");
    assert_eq!((t.status, thumb.width(), thumb.height()), (200, 4, 3));

    // Not a member: exactly like a file that does not exist.
    let g = fetch(&carl, &a.url).await;
    let missing = fetch(&carl, "/api/files/0123456789abcdef0123456789abcdef/x.png").await;
    assert_eq!((g.status, g.json()), (404, missing.json()));
    assert_eq!(g.json()["error"]["code"], "file_not_found");
    assert_eq!(fetch(&carl, "/api/files/..%2F..%2Fetc/passwd").await.status, 404);
    // Carl cannot upload there either (404, like a room that does not exist).
    let (s, body) = upload(&carl, room, "x.txt", "text/plain", b"x".to_vec()).await;
    assert_eq!((s, body["error"]["code"].as_str()), (404, Some("room_not_found")));
    // Bob leaves: his copied link stops working at once.
    assert_eq!(bob.post(&format!("/api/rooms/{room}/leave"), json!({})).await.0, 204);
    let g = fetch(&bob, &a.url).await;
    assert_eq!((g.status, g.json()["error"]["code"].as_str()), (404, Some("file_not_found")));
    assert_eq!(fetch(&bob, a.thumb_url.as_deref().unwrap_or("")).await.status, 404);
    // Without a session: 401.
    let anon = reqwest::get(format!("{}{}", ann.base, a.url)).await.expect("get");
    assert_eq!(anon.status().as_u16(), 401);
}

async fn hostile_uploads_are_served_inert(b: Backend) {
    let srv = TestServer::start_with(b, shared_files).await;
    let ann = srv.user("ann").await;
    let room = ann.create_room("hostile", json!({})).await;

    let check_inert = |g: &Got, name_star: &str| {
        assert_eq!(g.status, 200);
        assert_eq!(g.h("content-type"), "application/octet-stream");
        assert_eq!(g.h("x-content-type-options"), "nosniff");
        assert_eq!(g.h("content-security-policy"), "sandbox; default-src 'none'");
        let cd = g.h("content-disposition");
        assert!(cd.starts_with("attachment;"), "{cd}");
        assert!(cd.contains(&format!("filename*=UTF-8''{name_star}")), "{cd}");
    };

    // HTML: kept, never served as HTML.
    let html = b"<html><body><script>alert(document.cookie)</script></body></html>".to_vec();
    let a = upload_ok(&ann, room, "page.html", "text/html", html.clone()).await;
    assert_eq!((a.mime.as_str(), a.image, a.thumb_url.clone()), ("application/octet-stream", None, None));
    let g = fetch(&ann, &a.url).await;
    check_inert(&g, "page.html");
    assert_eq!(g.body, html);

    // SVG with a script: not one of our image types, so a download like any file.
    let svg = br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#.to_vec();
    let a = upload_ok(&ann, room, "logo.svg", "image/svg+xml", svg).await;
    assert_eq!((a.mime.as_str(), a.image), ("application/octet-stream", None));
    check_inert(&fetch(&ann, &a.url).await, "logo.svg");

    // A polyglot: a GIF header followed by HTML/JS. It claims to be an image (by its
    // bytes, whatever the declared type) and does not decode: refused.
    let mut poly = b"GIF89a\x01\x00\x01\x00\x00\x00\x00".to_vec();
    poly.extend_from_slice(b"<html><script>alert(1)</script></html>");
    for declared in ["image/gif", "text/html", "application/octet-stream"] {
        let (s, body) = upload(&ann, room, "poly.gif", declared, poly.clone()).await;
        assert_eq!((s, body["error"]["code"].as_str()), (422, Some("image_rejected")), "{declared}: {body}");
    }
    // A real GIF with HTML appended decodes: it is served as the image it is, inline,
    // and the browser is told not to sniff and to sandbox it.
    let mut gif_html = gif(4, 4);
    gif_html.extend_from_slice(b"<html><script>alert(1)</script></html>");
    let a = upload_ok(&ann, room, "trick.gif", "text/html", gif_html).await;
    assert_eq!(a.mime, "image/gif");
    let g = fetch(&ann, &a.url).await;
    assert_eq!((g.h("content-type"), g.h("x-content-type-options")), ("image/gif", "nosniff"));
    assert_eq!(g.h("content-security-policy"), "sandbox; default-src 'none'");
    // Text declared as PNG: a claim that does not decode.
    let (s, body) = upload(&ann, room, "fake.png", "image/png", b"<script>alert(1)</script>".to_vec()).await;
    assert_eq!((s, body["error"]["code"].as_str()), (422, Some("image_rejected")));

    // A decompression bomb: refused from its header, nothing allocated.
    let (s, body) = upload(&ann, room, "bomb.png", "image/png", png_bomb()).await;
    assert_eq!((s, body["error"]["code"].as_str()), (422, Some("image_rejected")), "{body}");

    // Path traversal and bidi overrides in the name.
    let a =
        upload_ok(&ann, room, "../../etc/\u{202E}txt.exe\u{2066}.pdf", "application/pdf", b"%PDF-1.4".to_vec()).await;
    assert_eq!(a.name, "txt.exe.pdf");
    assert_eq!(a.mime, "application/pdf");
    let g = fetch(&ann, &a.url).await;
    check_inert(&g, "txt.exe.pdf");
    assert!(!g.h("content-disposition").contains(".."));
    let a = upload_ok(&ann, room, "résumé \"final\".txt", "text/plain", b"cv".to_vec()).await;
    let g = fetch(&ann, &a.url).await;
    check_inert(&g, "r%C3%A9sum%C3%A9%20%22final%22.txt");
    assert!(g.h("content-disposition").contains("filename=\"r_sum_ _final_.txt\""), "{}", g.h("content-disposition"));

    // A name that is nothing once cleaned, or none at all: 400.
    for name in ["../..", "\u{202E}"] {
        let (s, body) = upload(&ann, room, name, "text/plain", b"x".to_vec()).await;
        assert_eq!((s, body["error"]["code"].as_str()), (400, Some("bad_request")), "{name:?}");
    }
    let r = ann.http.post(format!("{}/api/rooms/{room}/files", ann.base)).body("x").send().await.expect("post");
    assert_eq!(r.status().as_u16(), 400);
    // Ephemeral rooms take no files.
    let eph = ann.create_room("fleeting", json!({"retention": {"ephemeral": true}})).await;
    let (s, body) = upload(&ann, eph, "a.txt", "text/plain", b"x".to_vec()).await;
    assert_eq!((s, body["error"]["code"].as_str()), (409, Some("room_is_ephemeral")));
    // Another site's page cannot upload with the cookie.
    let r = ann
        .http
        .post(format!("{}/api/rooms/{room}/files?name=x.txt", ann.base))
        .header("origin", "https://evil.example")
        .body("x")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 403);
}

/// Reads an HTTP answer's status line from a raw socket.
async fn status_line(s: &mut tokio::net::TcpStream) -> String {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("an answer in time")
        .expect("read");
    String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_string()
}

async fn limits_quota_and_types(b: Backend) {
    let srv = TestServer::start_with(b, |c| {
        shared_files(c);
        c.max_file_bytes = 1000;
        c.user_storage_quota = 2500;
        c.accepted_file_types = rtm::domain::files::AcceptedTypes::parse("image/*, text/plain").expect("types");
    })
    .await;
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let room = ann.create_room("limits", json!({})).await;
    assert_eq!(bob.post(&format!("/api/rooms/{room}/join"), json!({})).await.0, 200);
    // The limit is public, so a client can refuse a bigger file without sending it.
    let (s, cfg) = ann.get("/api/config").await;
    assert_eq!((s, cfg["max_file_bytes"].as_u64()), (200, Some(1000)), "{cfg}");

    // Too large, with a length: 413 at once.
    let (s, body) = upload(&ann, room, "big.txt", "text/plain", vec![b'a'; 1001]).await;
    assert_eq!((s, body["error"]["code"].as_str()), (413, Some("file_too_large")));
    // Too large, streamed without a length: the answer comes while the body is still
    // open (the server stopped reading at the limit; this client never finished).
    let cookie = ann.cookie.clone().expect("session cookie");
    let mut sock = tokio::net::TcpStream::connect(ann.addr).await.expect("connect");
    let head = format!(
        "POST /api/rooms/{room}/files?name=stream.txt HTTP/1.1\r\nHost: {}\r\nOrigin: {}\r\nCookie: {cookie}\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
        ann.addr, ann.origin
    );
    sock.write_all(head.as_bytes()).await.expect("head");
    for _ in 0..2 {
        sock.write_all(format!("400\r\n{}\r\n", "a".repeat(1024)).as_bytes()).await.expect("chunk");
    }
    let line = status_line(&mut sock).await;
    assert!(line.starts_with("HTTP/1.1 413"), "{line}");
    // A declared length past the limit: refused before any byte of the body.
    let mut sock = tokio::net::TcpStream::connect(ann.addr).await.expect("connect");
    let head = format!(
        "POST /api/rooms/{room}/files?name=huge.txt HTTP/1.1\r\nHost: {}\r\nOrigin: {}\r\nCookie: {cookie}\r\nContent-Type: text/plain\r\nContent-Length: 100000000\r\n\r\n",
        ann.addr, ann.origin
    );
    sock.write_all(head.as_bytes()).await.expect("head");
    let line = status_line(&mut sock).await;
    assert!(line.starts_with("HTTP/1.1 413"), "{line}");

    // Accepted types: declared, and judged from the bytes.
    let (s, body) = upload(&ann, room, "doc.pdf", "application/pdf", b"%PDF".to_vec()).await;
    assert_eq!((s, body["error"]["code"].as_str()), (415, Some("file_type_not_allowed")));
    let (s, body) = upload(&ann, room, "page.bin", "application/octet-stream", b"<html>".to_vec()).await;
    assert_eq!((s, body["error"]["code"].as_str()), (415, Some("file_type_not_allowed")));
    let small = png(4, 4);
    assert!(small.len() < 1000);
    let a = upload_ok(&ann, room, "dot.png", "application/octet-stream", small.clone()).await;
    assert_eq!(a.mime, "image/png", "judged from its bytes");
    // `image/*` admits verified images only: an SVG (or a BMP) would be stored and
    // shown as unknown bytes.
    let svg = b"<svg xmlns='http://www.w3.org/2000/svg'/>".to_vec();
    let (s, body) = upload(&ann, room, "logo.svg", "image/svg+xml", svg).await;
    assert_eq!((s, body["error"]["code"].as_str()), (415, Some("file_type_not_allowed")), "{body}");

    // Quota: every byte a person keeps counts, pending or attached.
    let used = small.len();
    let n = (2500 - used) / 900;
    for k in 0..n {
        upload_ok(&ann, room, &format!("f{k}.txt"), "text/plain", vec![b'0' + k as u8; 900]).await;
    }
    let (s, body) = upload(&ann, room, "one-more.txt", "text/plain", vec![b'z'; 900]).await;
    assert_eq!((s, body["error"]["code"].as_str()), (413, Some("quota_exceeded")));
    // Someone else's quota is their own.
    upload_ok(&bob, room, "bob.txt", "text/plain", vec![b'b'; 900]).await;
    // Eleven attachments are too many.
    let mut ws = ann.ws().await;
    let ids: Vec<String> = (0..11).map(|k| format!("{k:032x}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let f = send_files(&mut ws, room, "many", "x", &refs).await;
    assert_eq!(error_code(&f), "too_many_attachments");
    // A repeated id counts once: ten files named eleven times are not too many (these
    // ten do not exist, which is the error then).
    let mut refs: Vec<&str> = ids[..10].iter().map(String::as_str).collect();
    refs.push(ids[0].as_str());
    let f = send_files(&mut ws, room, "repeated", "x", &refs).await;
    assert_eq!(error_code(&f), "attachment_not_found");
    // Whoever may not post in a room may not upload into it either.
    let bob_id = bob.id().await;
    let (s, body) = ann.post(&format!("/api/rooms/{room}/mutes"), json!({"user": bob_id, "minutes": 5})).await;
    assert_eq!(s, 204, "{body}");
    // (On a cluster bob may be on the other node, which learns of the mute from the
    // bus a moment later: until then his node's cached room still lets him post.)
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (s, body) = upload(&bob, room, "muted.txt", "text/plain", b"hush".to_vec()).await;
        if (s, body["error"]["code"].as_str()) == (403, Some("muted")) {
            break;
        }
        assert!(b == Backend::Cluster && tokio::time::Instant::now() < deadline, "{s} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nor into an archived room, the admin included (ann is the first account).
    let (s, body) = ann.post(&format!("/api/admin/rooms/{room}/archive"), json!({})).await;
    assert_eq!(s, 204, "{body}");
    let (s, body) = upload(&ann, room, "late.txt", "text/plain", b"too late".to_vec()).await;
    assert_eq!((s, body["error"]["code"].as_str()), (403, Some("room_archived")), "{body}");
}

async fn retention_and_delete_remove_blobs(b: Backend) {
    let srv = TestServer::start_with(b, shared_files).await;
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let dir = files_dir(&srv);
    let room = ann.create_room("keep-two", json!({"retention": {"keep_messages": 2}})).await;
    assert_eq!(bob.post(&format!("/api/rooms/{room}/join"), json!({})).await.0, 200);
    let mut wa = ann.ws().await;

    let bodies: Vec<Vec<u8>> = (1..=3).map(|k| format!("file number {k}").into_bytes()).collect();
    let mut sent = Vec::new();
    for (k, body) in bodies.iter().enumerate() {
        let a = upload_ok(&ann, room, &format!("n{k}.txt"), "text/plain", body.clone()).await;
        let seq = ack_seq(&send_files(&mut wa, room, &format!("k{k}"), &format!("message {k}"), &[&a.id]).await);
        sent.push((seq, a));
    }
    // Only the last two messages are kept; the first one's file left the disk.
    let want: BTreeSet<String> = bodies[1..].iter().map(|b| sha(b)).collect();
    wait_for_blobs(&dir, &want).await;
    assert_eq!(fetch(&bob, &sent[0].1.url).await.status, 404);
    assert_eq!(fetch(&bob, &sent[1].1.url).await.status, 200);

    // The same bytes in two messages are one blob, kept while either is.
    let again = upload_ok(&ann, room, "copy.txt", "text/plain", bodies[2].clone()).await;
    ack_seq(&send_files(&mut wa, room, "k-copy", "copy", &[&again.id]).await);
    // Message 2 is trimmed now; message 3 and the copy share a blob.
    let want: BTreeSet<String> = [sha(&bodies[2])].into();
    wait_for_blobs(&dir, &want).await;

    // The delete action takes the message's files with it (in a room that keeps
    // everything, so the tombstone stays to be looked at).
    let plain = ann.create_room("keep-all", json!({})).await;
    let gone_bytes = b"delete me".to_vec();
    let d = upload_ok(&ann, plain, "d.txt", "text/plain", gone_bytes.clone()).await;
    let dseq = ack_seq(&send_files(&mut wa, plain, "d-1", "to delete", &[&d.id]).await);
    let mut with_d = want.clone();
    with_d.insert(sha(&gone_bytes));
    wait_for_blobs(&dir, &with_d).await;
    let f = wa.request(json!({"type": "delete", "room": plain, "seq": dseq})).await;
    assert!(matches!(f, ServerFrame::Ack { .. }), "{f:?}");
    assert_eq!(fetch(&ann, &d.url).await.status, 404);
    wait_for_blobs(&dir, &want).await;
    let events = match wa.request(json!({"type": "history", "room": plain})).await {
        ServerFrame::History { events, .. } => events,
        other => panic!("{other:?}"),
    };
    let deleted = events.iter().find(|e| e.seq == Some(dseq)).expect("tombstone");
    assert!(deleted.deleted && deleted.attachments.is_empty(), "{deleted:?}");
    // A retry of that send (its ack lost) is still the duplicate it is, though its
    // files went with the delete (§3.9, §5.2).
    let f = send_files(&mut wa, plain, "d-1", "to delete", &[&d.id]).await;
    assert!(matches!(f, ServerFrame::Ack { seq: Some(s), duplicate: true, .. } if s == dseq), "{f:?}");
    assert_eq!(fetch(&bob, &again.url).await.body, bodies[2]);

    // A pending upload past its day is deleted, and so is its blob.
    let pending = upload_ok(&ann, room, "forgotten.txt", "text/plain", b"never sent".to_vec()).await;
    let store = srv.state.chat.store();
    let gone = store.delete_pending_files(rtm::chat::now_ms() + 25 * 3600 * 1000).await.expect("expire");
    assert_eq!(gone, 1);
    srv.state.chat.sweep_files().await.expect("sweep");
    assert_eq!(blobs_on_disk(&dir), want);
    assert_eq!(fetch(&ann, &pending.url).await.status, 404);

    // A room switched to ephemeral keeps nothing: its files go too.
    let (s, _) = ann.patch(&format!("/api/rooms/{room}"), json!({"retention": {"ephemeral": true}})).await;
    assert_eq!(s, 200);
    wait_for_blobs(&dir, &BTreeSet::new()).await;
    assert_eq!(fetch(&ann, &again.url).await.status, 404);
}

async fn a_read_in_a_dm_removes_the_files_it_lets_go(b: Backend) {
    // A DM keeps the last 2 but holds what bob has not read. His read lets the first
    // message go (past the cut and now read), and its file leaves the disk with it:
    // the read itself deletes it and asks the sweeper, with no send after it.
    let srv = TestServer::start_with(b, |c| {
        shared_files(c);
        c.default_keep_messages = 2;
    })
    .await;
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let dir = files_dir(&srv);
    let (s, body) = ann.post("/api/dms", json!({"user_id": bob.id().await})).await;
    assert_eq!(s, 200, "{body}");
    let dm = body["room"]["id"].as_i64().expect("the DM's id");
    let mut wa = ann.ws().await;
    let bodies: Vec<Vec<u8>> = (1..=3).map(|k| format!("dm file {k}").into_bytes()).collect();
    let mut sent = Vec::new();
    for (k, bytes) in bodies.iter().enumerate() {
        let a = upload_ok(&ann, dm, &format!("d{k}.txt"), "text/plain", bytes.clone()).await;
        let seq = ack_seq(&send_files(&mut wa, dm, &format!("dm{k}"), &format!("file {k}"), &[&a.id]).await);
        sent.push((seq, a));
    }
    let all: BTreeSet<String> = bodies.iter().map(|b| sha(b)).collect();
    wait_for_blobs(&dir, &all).await;
    assert_eq!(fetch(&bob, &sent[0].1.url).await.status, 200, "held for bob, unread");
    // Past the sweeper's pause after the sends' sweeps (500 ms), so that only a poke
    // from the read can start the next one (else: the periodic one, minutes away).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut wb = bob.ws().await;
    let f = wb.request(json!({"type": "read", "room": dm, "seq": sent[2].0})).await;
    assert!(matches!(f, ServerFrame::Ack { .. }), "{f:?}");
    assert_eq!(fetch(&bob, &sent[0].1.url).await.status, 404, "trimmed by the read");
    let want: BTreeSet<String> = bodies[1..].iter().map(|b| sha(b)).collect();
    wait_for_blobs(&dir, &want).await;
    assert_eq!(fetch(&bob, &sent[1].1.url).await.body, bodies[1]);
}

async fn keep_days_pruning_removes_files(b: Backend) {
    let srv = TestServer::start_with(b, shared_files).await;
    let ann = srv.user("ann").await;
    let dir = files_dir(&srv);
    let room = ann.create_room("a-day", json!({"retention": {"keep_days": 1}})).await;
    let mut ws = ann.ws().await;
    let body = b"kept for a day".to_vec();
    let a = upload_ok(&ann, room, "day.txt", "text/plain", body.clone()).await;
    ack_seq(&send_files(&mut ws, room, "d-1", "today", &[&a.id]).await);
    wait_for_blobs(&dir, &[sha(&body)].into()).await;
    // Two days later, as the pruner sees it: the message goes, its file with it.
    let store = srv.state.chat.store();
    let pruned = store.prune_expired(rtm::chat::now_ms() + 2 * 86_400_000).await.expect("prune");
    assert!(pruned >= 1);
    assert_eq!(fetch(&ann, &a.url).await.status, 404);
    srv.state.chat.files_changed();
    wait_for_blobs(&dir, &BTreeSet::new()).await;
}

async fn restart_keeps_files(b: Backend) {
    let srv = TestServer::start_with(b, shared_files).await;
    let ann = srv.node_client();
    let mut ann = ann;
    assert_eq!(ann.register("ann").await.0, 201);
    let room = ann.create_room("lasting", json!({})).await;
    let bytes = png(100, 50);
    let a = upload_ok(&ann, room, "keep.png", "image/png", bytes.clone()).await;
    let mut ws = ann.ws().await;
    ack_seq(&send_files(&mut ws, room, "r-1", "kept", &[&a.id]).await);
    drop(ws);
    let backend = srv.backend;
    let (config, dir) = srv.stop().await;
    let srv = TestServer::start_config(backend, config, dir).await;
    let mut ann = srv.node_client();
    assert_eq!(ann.login("ann", &password_of("ann")).await.0, 200);
    let g = fetch(&ann, &a.url).await;
    assert_eq!((g.status, g.body == bytes), (200, true));
    assert_eq!(fetch(&ann, a.thumb_url.as_deref().unwrap_or("")).await.status, 200);
    let (s, body) = ann.get(&format!("/api/rooms/{room}/messages")).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.to_string().contains(&a.id), "{body}");
}

/// Through nginx with THE config of docs/DEPLOY.md, in front of two nodes sharing
/// one files directory: a 5 MB upload passes (nginx's own default limit is 1 MB) and
/// is streamed on; downloads through either node give the same bytes with the file
/// headers intact; past `client_max_body_size` nginx itself answers 413, and below it
/// a node's refusal reaches the client without taking the node out of rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_through_nginx_to_two_nodes() {
    let port = common::nginx::free_port();
    let origin = common::nginx::origin(port);
    let shared = tempfile::tempdir().expect("tempdir");
    let files = shared.path().to_path_buf();
    let cluster = common::cluster::Cluster::start_with(2, |c| {
        c.public_origin = Some(origin.clone());
        c.trust_proxy = true;
        c.files_dir = Some(files.clone());
    })
    .await;
    let upstreams: Vec<_> = cluster.nodes.iter().map(|s| s.addr).collect();
    let nginx = common::nginx::Nginx::start_on(port, &upstreams).await;
    let ann = nginx.user("ann").await;
    let room = ann.create_room("via-proxy", json!({})).await;
    let bytes: Vec<u8> = (0..5_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let a = upload_ok(&ann, room, "big.bin", "application/octet-stream", bytes.clone()).await;
    assert_eq!(a.size, 5_000_000);
    // Several downloads: round-robin sends them to both nodes.
    for _ in 0..4 {
        let g = fetch(&ann, &a.url).await;
        assert_eq!(g.status, 200, "{}", nginx.logs());
        assert!(g.body == bytes, "the bytes through nginx");
        assert_eq!(g.h("x-content-type-options"), "nosniff");
        assert_eq!(g.h("content-security-policy"), "sandbox; default-src 'none'");
        assert!(g.h("content-disposition").starts_with("attachment;"));
    }
    let (s, body) = upload(&ann, room, "huge.bin", "application/octet-stream", vec![0u8; 28 * 1024 * 1024]).await;
    assert_eq!((s, body["error"]["code"].as_str()), (413, Some("file_too_large")), "nginx's own 413 is the API's");
    // Over the nodes' limit but within nginx's: the node's own refusal comes through
    // (it reads the rest of the body first), on each node in turn, and for someone not
    // signed in too. A node that answered before the body ended made nginx fail its
    // write, answer 502 and take the node out of rotation for 10 s: with two such
    // uploads no node was left and every request failed.
    let over = vec![0u8; 25 * 1024 * 1024 + 512 * 1024];
    for _ in 0..2 {
        let (s, body) = upload(&ann, room, "over.bin", "application/octet-stream", over.clone()).await;
        assert_eq!((s, body["error"]["code"].as_str()), (413, Some("file_too_large")), "{}", nginx.logs());
    }
    let (s, body) = upload(&nginx.client(), room, "over.bin", "application/octet-stream", over).await;
    assert_eq!(s, 401, "{body}");
    for _ in 0..4 {
        assert_eq!(ann.get("/api/me").await.0, 200, "every node still in rotation: {}", nginx.logs());
    }
    assert_eq!(blobs_on_disk(&files), [sha(&bytes)].into());
}

on_both_backends!(
    upload_send_receive_download,
    hostile_uploads_are_served_inert,
    limits_quota_and_types,
    retention_and_delete_remove_blobs,
    a_read_in_a_dm_removes_the_files_it_lets_go,
    keep_days_pruning_removes_files,
    restart_keeps_files,
);
