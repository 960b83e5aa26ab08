//! The web client's files as a browser gets them: compressed on the first load, and
//! on a reload nothing unchanged comes again (every file revalidates with its ETag and
//! gets a bodiless 304); the bytes of both loads, from the Performance API, are
//! printed for BENCHMARKS.md. Then the installable app: the manifest and its icons,
//! the service worker in control, and, with the server stopped, a reload that shows
//! the app's own "cannot reach the server" state instead of the browser's error page.

use anyhow::{Result, ensure};
use serde_json::{Value, json};

use crate::{
    browser::{Browser, Driver},
    common::{Backend, TestServer},
};

/// The bytes of the page's own files in this document's load: the navigation and
/// every same-origin resource outside `/api/`.
const LOAD_BYTES: &str = "
    const nav = performance.getEntriesByType('navigation')[0];
    const files = [nav, ...performance.getEntriesByType('resource')].filter((e) => {
        const u = new URL(e.name);
        return u.origin === location.origin && !u.pathname.startsWith('/api/');
    });
    const sum = (k) => files.reduce((n, e) => n + (e[k] || 0), 0);
    return {
        files: files.length,
        transfer: sum('transferSize'),
        encoded: sum('encodedBodySize'),
        decoded: sum('decodedBodySize'),
        statuses: files.map((e) => [new URL(e.name).pathname, e.responseStatus, e.transferSize, e.encodedBodySize]),
    };";

/// Waits until the page has loaded and the sign-in screen is up (every module of the
/// client has been fetched and run by then).
async fn loaded(b: &Browser) -> Result<()> {
    b.wait_js(
        "the page loaded and the sign-in screen shown",
        "return document.readyState === 'complete' && !document.getElementById('auth-screen').hidden;",
        vec![],
    )
    .await?;
    Ok(())
}

fn figure(v: &Value, k: &str) -> i64 {
    v[k].as_i64().unwrap_or(-1)
}

pub async fn assets_and_offline(d: &Driver) -> Result<()> {
    let srv = TestServer::start(Backend::Sqlite).await;
    let home = srv.url("/");
    let b = d.browser("visitor").await?;

    // First load: a fresh profile, nothing cached.
    b.goto(&home).await?;
    loaded(&b).await?;
    let first = b.js(LOAD_BYTES, vec![]).await?;
    eprintln!("assets: first load {first}");
    ensure!(figure(&first, "files") >= 10, "the client's files were loaded: {first}");
    // Compressed on the wire: what came is well under what the files hold.
    ensure!(figure(&first, "encoded") * 3 < figure(&first, "decoded"), "files came compressed: {first}");

    // The service worker installs and takes control of the page.
    b.wait_js(
        "the service worker controls the page",
        "return !!(navigator.serviceWorker && navigator.serviceWorker.controller
                   && navigator.serviceWorker.controller.state === 'activated');",
        vec![],
    )
    .await?;
    let cached = b
        .wait_js(
            "the shell in the service worker's cache",
            "const done = arguments[arguments.length - 1];
             return (async () => {
                 const keys = await caches.keys();
                 const shell = keys.filter((k) => k.startsWith('rtm-shell-'));
                 if (shell.length !== 1) return null;
                 const c = await caches.open(shell[0]);
                 return (await c.keys()).map((r) => new URL(r.url).pathname);
             })();",
            vec![],
        )
        .await?;
    let cached: Vec<String> =
        cached.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default();
    for must in ["/", "/app.js", "/style.css", "/js/api.js", "/manifest.webmanifest", "/icons/icon-192.png"] {
        ensure!(cached.iter().any(|p| p == must), "{must} not in the service worker's cache: {cached:?}");
    }
    ensure!(!cached.iter().any(|p| p.starts_with("/api/")), "an API response was cached: {cached:?}");

    // Reload: every file revalidates; nothing unchanged comes again. Measured with the
    // service worker out of the way: the Performance API reports what a service worker
    // answers as a fresh transfer whatever the network did (its own fetches revalidate
    // through the same HTTP cache). The page registers it again on this load.
    b.js(
        "return navigator.serviceWorker.getRegistrations()
             .then((rs) => Promise.all(rs.map((r) => r.unregister())))
             .then((done) => done.length);",
        vec![],
    )
    .await?;
    b.js("location.reload();", vec![]).await?;
    loaded(&b).await?;
    let reload = b.js(LOAD_BYTES, vec![]).await?;
    eprintln!("assets: reload {reload}");
    ensure!(figure(&reload, "files") >= 10, "the client's files were loaded again: {reload}");
    ensure!(
        figure(&reload, "transfer") * 10 < figure(&first, "transfer"),
        "a reload fetched the files again: first {first}, reload {reload}"
    );
    // Each file: headers only (a 304), no body came again.
    for f in reload["statuses"].as_array().cloned().unwrap_or_default() {
        ensure!(f[2].as_i64().is_some_and(|t| t < 1000), "{} came again on reload: {reload}", f[0]);
    }
    b.wait_js(
        "the service worker controls the page again",
        "return !!(navigator.serviceWorker && navigator.serviceWorker.controller
                   && navigator.serviceWorker.controller.state === 'activated');",
        vec![],
    )
    .await?;

    // The manifest and its icons.
    let manifest = b
        .js(
            "const done = arguments[arguments.length - 1];
             return (async () => {
                 const link = document.querySelector('link[rel=manifest]');
                 const m = await (await fetch(link.href)).json();
                 const icons = [];
                 for (const i of m.icons) {
                     const r = await fetch(i.src);
                     icons.push([i.src, r.status, r.headers.get('content-type'), i.sizes, i.purpose]);
                 }
                 return { name: m.name, start_url: m.start_url, display: m.display, icons };
             })();",
            vec![],
        )
        .await?;
    ensure!(manifest["display"] == json!("standalone") && manifest["start_url"] == json!("/"), "{manifest}");
    let icons = manifest["icons"].as_array().cloned().unwrap_or_default();
    ensure!(icons.iter().all(|i| i[1] == json!(200)), "every icon is served: {manifest}");
    for size in ["192x192", "512x512"] {
        ensure!(icons.iter().any(|i| i[3] == json!(size) && i[2] == json!("image/png")), "a {size} PNG: {manifest}");
    }

    // The server goes away: a reload shows the app saying so, not the browser's page.
    srv.stop().await;
    b.js("location.reload();", vec![]).await?;
    b.wait_js(
        "the app's offline state after a reload with the server stopped",
        "const t = document.getElementById('boot-text');
         const retry = document.getElementById('boot-retry');
         return location.protocol === 'http:' && t && /Cannot reach the server/.test(t.textContent)
                && !document.getElementById('boot').hidden && retry && !retry.hidden;",
        vec![],
    )
    .await?;
    Ok(())
}
