//! What a person sees: hostile message text renders as text (live, from the ack and
//! from history), links are safe, the layout works at 375 px wide, and the screenshots
//! in docs/screenshots/ (sign-in, desktop, phone, new-room dialog) are taken from the
//! real app talking to the real server.

use std::path::{Path, PathBuf};

use anyhow::{Result, ensure};
use serde_json::{Value, json};

use crate::{
    browser::{Browser, Driver},
    common::{Backend, Client, TestServer},
};

const PASSWORD: &str = "a long enough password";

fn screenshot_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs").join("screenshots").join(name)
}

/// Screenshots are committed: keep them small.
async fn screenshot(b: &Browser, name: &str) -> Result<()> {
    let path = screenshot_path(name);
    b.screenshot(&path).await?;
    let size = std::fs::metadata(&path)?.len();
    ensure!(size < 300 * 1024, "{name} is {size} bytes; keep screenshots under 300 KB");
    Ok(())
}

/// An account with a real-looking name, signed in over HTTP.
async fn person(srv: &TestServer, first: &str, last: &str, username: &str) -> Result<Client> {
    let mut c = srv.client();
    let (s, body) = c
        .register_with(json!({
            "first_name": first, "last_name": last, "email": format!("{username}@example.org"),
            "username": username, "password": PASSWORD,
        }))
        .await;
    ensure!(s == 201, "sign-up of {username}: {body}");
    Ok(c)
}

async fn join(c: &Client, room: i64) -> Result<()> {
    let (s, body) = c.post(&format!("/api/rooms/{room}/join"), json!({})).await;
    ensure!(s == 200, "join {room}: {body}");
    Ok(())
}

/// Sent from the browser.
const HOSTILE_OWN: [&str; 4] =
    ["<img src=x onerror=alert(1)>", "<script>alert(2)</script>", "https://example.org/x", "javascript:alert(1)"];
/// Sent by someone else (arrives live, not through our own ack).
const HOSTILE_PEER: [&str; 3] = [
    "<img src=y onerror=\"document.title='pwned'\">",
    "<b>bold?</b> <script>alert(5)</script>",
    "read https://example.org/docs, then javascript:alert(6)",
];

/// Everything about the rendering of the hostile messages, in one look.
const INSPECT: &str = "
  const texts = [...document.querySelectorAll('#messages .msg .text')];
  return {
    counts: arguments[0].map((t) => texts.filter((e) => e.textContent === t).length),
    img: document.querySelectorAll('#messages img').length,
    script: document.querySelectorAll('#messages script').length,
    bold: document.querySelectorAll('#messages b').length,
    links: [...document.querySelectorAll('#messages a')].map((a) => ({
      href: a.getAttribute('href'), rel: a.rel, target: a.target, text: a.textContent,
    })),
    title: document.title,
  };";

async fn check_rendering(b: &Browser, when: &str) -> Result<()> {
    let all: Vec<&str> = HOSTILE_OWN.iter().chain(HOSTILE_PEER.iter()).copied().collect();
    let v = b.js(INSPECT, vec![json!(all)]).await?;
    ensure!(v["counts"].as_array().is_some_and(|c| c.iter().all(|n| n == 1)), "{when}: each text shown once: {v}");
    ensure!(v["img"] == 0 && v["script"] == 0 && v["bold"] == 0, "{when}: markup must not become elements: {v}");
    let links = v["links"].as_array().cloned().unwrap_or_default();
    let hrefs: Vec<&str> = links.iter().filter_map(|l| l["href"].as_str()).collect();
    ensure!(hrefs == ["https://example.org/x", "https://example.org/docs"], "{when}: only http(s) links: {v}");
    for l in &links {
        let rel: Vec<&str> = l["rel"].as_str().unwrap_or("").split_whitespace().collect();
        ensure!(rel.contains(&"noopener") && rel.contains(&"noreferrer"), "{when}: link rel: {l}");
        ensure!(l["target"] == "_blank", "{when}: links open in a new tab: {l}");
    }
    ensure!(links[0]["text"] == "https://example.org/x", "{when}: the link shows its URL: {v}");
    ensure!(links[1]["text"] == "https://example.org/docs", "{when}: trailing comma stays outside the link: {v}");
    ensure!(!v["title"].as_str().unwrap_or("").contains("pwned"), "{when}: no script ran: {v}");
    ensure!(!b.alert_open().await, "{when}: no alert() may have run");
    Ok(())
}

pub async fn rendering_and_layout(d: &Driver) -> Result<()> {
    let srv = TestServer::start(Backend::Sqlite).await;
    let erin_api = person(&srv, "Erin", "Mendez", "erin").await?;
    let frank = person(&srv, "Frank", "Okafor", "frank").await?;
    let grace = person(&srv, "Grace", "Hopper", "grace").await?;
    let design = frank.create_room("design", json!({ "topic": "Mockups, reviews and the style guide" })).await;
    let random = frank.create_room("random", json!({ "topic": "Off-topic chatter" })).await;
    let sandbox = erin_api
        .create_room("sandbox", json!({ "topic": "Try anything here", "retention": { "keep_messages": 50, "keep_days": null, "ephemeral": false } }))
        .await;
    for r in [design, random] {
        join(&erin_api, r).await?;
    }
    join(&grace, design).await?;
    join(&frank, sandbox).await?;

    // Some history in #design; Grace is offline afterwards, Frank stays online.
    {
        let mut g = grace.ws().await;
        g.say(design, "I pushed the new colour tokens, dark mode included.").await;
    }
    let mut f = frank.ws().await;
    f.say(design, "Nice! The sidebar reads much better now.").await;
    let mut e = erin_api.ws().await;
    e.say(design, "Agreed. I will check the phone layout next.").await;
    drop(e);
    f.say(design, "The review notes are at https://example.org/design/review-3 if you need them.").await;
    let (s, dm) = frank.post("/api/dms", json!({ "user_id": erin_api.id().await })).await;
    ensure!(s == 200, "frank opens a DM: {dm}");
    let dm = dm["room"]["id"].as_i64().unwrap_or_default();
    f.say(dm, "Do you have a minute for the new-room dialog copy?").await;

    // The sign-in screen.
    let erin = d.browser("erin").await?;
    erin.resize(1280, 800).await?;
    erin.goto(&srv.url("/")).await?;
    erin.wait_visible("#login-form").await?;
    erin.wait_js("focus in the first field", "return document.activeElement?.id === 'login-login';", vec![]).await?;
    screenshot(&erin, "signin.png").await?;
    erin.sign_in("erin", PASSWORD).await?;

    // Hostile text: from the browser (our ack) and from Frank (live)...
    erin.open_conversation("sandbox").await?;
    for text in HOSTILE_OWN {
        erin.send_message(text).await?;
        erin.wait_msg_delivered(text).await?;
    }
    for text in HOSTILE_PEER {
        f.say(sandbox, text).await;
        erin.wait_msg(text).await?;
    }
    check_rendering(&erin, "live").await?;
    // ... and from history after a reload.
    erin.c.refresh().await?;
    erin.wait_live().await?;
    erin.wait_room_open("sandbox").await?;
    for text in HOSTILE_OWN.iter().chain(HOSTILE_PEER.iter()) {
        erin.wait_msg_delivered(text).await?;
    }
    check_rendering(&erin, "history").await?;

    // The main view at desktop width: #design with Frank online and Grace away.
    erin.open_conversation("design").await?;
    erin.wait_msg("The review notes are at https://example.org/design/review-3 if you need them.").await?;
    erin.send_message("Looks great. Shipping it after lunch @frank.").await?;
    erin.wait_msg_delivered("Looks great. Shipping it after lunch @frank.").await?;
    let online = "for (const li of document.querySelectorAll('#members > li.member'))
                    if (li.querySelector('.member-handle')?.textContent === arguments[0])
                      return li.classList.contains('online') === arguments[1];
                  return false;";
    erin.wait_js("frank online", online, vec![json!("@frank"), json!(true)]).await?;
    erin.wait_js("grace offline", online, vec![json!("@grace"), json!(false)]).await?;
    let dm_item = erin.wait_item("#dm-list", ".name", "frank").await?;
    erin.wait_text(&format!("{dm_item} .unread"), "1").await?;
    f.send_json(json!({ "type": "typing", "room": design })).await;
    erin.wait_text("#typing", "frank is typing…").await?;
    erin.js("document.activeElement?.blur();", vec![]).await?;
    screenshot(&erin, "desktop.png").await?;

    // The new-room dialog.
    erin.click("#new-room-btn").await?;
    erin.fill("#new-room-form [name=name]", "release-planning").await?;
    erin.fill("#new-room-form [name=topic]", "Dates, owners and the checklist").await?;
    erin.select("#new-room-form [name=retention]", "both").await?;
    erin.wait_visible("#new-room-form [name=keep_days]").await?;
    erin.wait_visible("#new-room-form [name=keep_messages]").await?;
    screenshot(&erin, "new-room.png").await?;
    erin.click("#new-room-form button[data-close]").await?;
    erin.wait_js("the dialog to close", "return !document.getElementById('new-room-dialog').open;", vec![]).await?;

    // Phone width: the sidebar hides behind the menu button.
    erin.resize(375, 800).await?;
    erin.wait_visible("#menu-btn").await?;
    erin.wait_js(
        "the sidebar to be hidden",
        "return !document.getElementById('sidebar').checkVisibility({ visibilityProperty: true });",
        vec![],
    )
    .await?;
    erin.wait_js("the members overlay to be closed", "return document.getElementById('members-panel').hidden;", vec![])
        .await?;
    no_sideways_scroll(&erin).await?;
    // The DM's unread message shows on the menu button.
    erin.wait_text("#menu-unread", "1").await?;
    erin.click("#menu-btn").await?;
    erin.wait_visible("#sidebar").await?;
    erin.wait_visible("#room-list").await?;
    erin.wait_js(
        "drawer in place",
        "return document.getElementById('sidebar').getBoundingClientRect().left === 0;",
        vec![],
    )
    .await?;
    ensure!(
        erin.js("return document.getElementById('menu-btn').getAttribute('aria-expanded');", vec![]).await?
            == json!("true"),
        "aria-expanded on the menu button"
    );
    let item = erin.wait_item("#room-list", ".name", "random").await?;
    erin.click(&format!("{item} button.conv-link")).await?;
    erin.wait_room_open("random").await?;
    erin.wait_js(
        "the sidebar to close",
        "return !document.getElementById('sidebar').checkVisibility({ visibilityProperty: true });",
        vec![],
    )
    .await?;
    erin.wait_visible("#composer").await?;
    erin.type_keys("#composer", "Sent from my phone").await?;
    erin.click("#send-btn").await?;
    erin.wait_msg_delivered("Sent from my phone").await?;
    no_sideways_scroll(&erin).await?;

    // Back to #design through the menu for the phone screenshot.
    erin.click("#menu-btn").await?;
    let item = erin.wait_item("#room-list", ".name", "design").await?;
    erin.click(&format!("{item} button.conv-link")).await?;
    erin.wait_room_open("design").await?;
    erin.wait_js(
        "the sidebar to close",
        "return !document.getElementById('sidebar').checkVisibility({ visibilityProperty: true });",
        vec![],
    )
    .await?;
    erin.js("document.activeElement?.blur();", vec![]).await?;
    screenshot(&erin, "phone.png").await?;

    let errors = erin.console_errors().await;
    ensure!(errors.is_empty(), "console errors: {errors:#?}");
    erin.close(d).await?;
    drop(f);
    Ok(())
}

/// Nothing is wider than the screen.
async fn no_sideways_scroll(b: &Browser) -> Result<()> {
    let v: Value = b
        .js(
            "return { doc: document.documentElement.scrollWidth, body: document.body.scrollWidth, w: window.innerWidth };",
            vec![],
        )
        .await?;
    ensure!(v["doc"].as_u64() <= v["w"].as_u64() && v["body"].as_u64() <= v["w"].as_u64(), "no sideways scroll: {v}");
    Ok(())
}
