//! Response headers that protect people: API answers are never cached (they carry
//! personal data and secrets), and every answer carries the browser defences.

mod common;

use common::*;
use serde_json::json;

async fn header(c: &Client, method: &str, path: &str, body: Option<serde_json::Value>, name: &str) -> Option<String> {
    let url = format!("{}{}", c.base, path);
    let mut req = match method {
        "POST" => c.http.post(&url),
        _ => c.http.get(&url),
    };
    req = req.header("origin", c.origin.clone());
    if let Some(cookie) = &c.cookie {
        req = req.header("cookie", cookie.clone());
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("request");
    res.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_are_never_cached_and_carry_the_browser_defences() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let root = srv.user("root").await;
    for (method, path, body) in [
        ("GET", "/api/me", None),
        ("POST", "/api/me/tokens", Some(json!({"name": "ci"}))),
        ("GET", "/api/me/tokens", None),
        ("GET", "/api/admin/users", None),
        ("GET", "/api/search?q=x", None),
        ("GET", "/api/rooms", None),
        ("GET", "/api/nothing-here", None),
    ] {
        assert_eq!(
            header(&root, method, path, body, "cache-control").await.as_deref(),
            Some("no-store"),
            "{method} {path}"
        );
    }
    // Without a session too (errors are personal enough: they say who is signed in).
    let anon = srv.client();
    assert_eq!(header(&anon, "GET", "/api/me", None, "cache-control").await.as_deref(), Some("no-store"));
    for path in ["/api/me", "/"] {
        assert_eq!(header(&root, "GET", path, None, "x-content-type-options").await.as_deref(), Some("nosniff"));
        assert_eq!(header(&root, "GET", path, None, "x-frame-options").await.as_deref(), Some("DENY"));
        let csp = header(&root, "GET", path, None, "content-security-policy").await.unwrap_or_default();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
    }
}
