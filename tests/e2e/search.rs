//! Message search in the web client (issue 13, PROTOCOL.md §2.6), in real Chromium
//! against the real server (SQLite FTS5):
//!
//! - the panel opens with "/" outside a field (not while typing in the composer) and
//!   with Ctrl+K from inside one, and Escape gives the focus back;
//! - results while typing, each with its room, author, time and the matching words in
//!   `<mark>`: accents folded (`cafe` marks `Café`), a prefix (`flo` marks `Flore`),
//!   emoji before a match (code-point offsets, not UTF-16 units), hostile text shown
//!   as text;
//! - a private room ann is not in, a private room she left and someone else's DM
//!   never show up (while bob, who is in them, does find those messages);
//! - the "only in this conversation" and author filters, "More results" paging,
//!   clear messages for no result, `empty_query`, `invalid_query` and an unknown
//!   author;
//! - Up/Down and Enter (and a click) open the conversation at the message: history
//!   far back is paged in, the message is scrolled into view and highlighted.

use anyhow::{Result, ensure};
use fantoccini::key::Key;
use serde_json::{Value, json};

use crate::{
    browser::{Browser, Driver},
    common::{Backend, TestServer, password_of},
};

/// Messages after the far-back one in "archive": more than the first page of history
/// (50) and more than the list renders when a room opens (60).
const FILLERS: usize = 150;

/// What the results list shows: per result its room, author, time, text, the text of
/// each `<mark>`, whether it is the active option, and its data attributes; plus the
/// status line, whether "More results" shows, and whether anything but text, `<mark>`
/// and the layout elements got into the panel (hostile text must stay text).
const RESULTS: &str = "
  const panel = document.getElementById('search-panel');
  const items = [...document.querySelectorAll('#search-results > li')].map((li) => ({
    room: li.querySelector('.search-room')?.textContent ?? null,
    author: li.querySelector('.search-author')?.textContent ?? null,
    time: li.querySelector('.search-time')?.textContent ?? null,
    text: li.querySelector('.search-text')?.textContent ?? null,
    marks: [...li.querySelectorAll('.search-text mark')].map((m) => m.textContent),
    role: li.getAttribute('role'),
    selected: li.getAttribute('aria-selected'),
    id: li.id,
    room_id: Number(li.dataset.roomId),
    seq: Number(li.dataset.seq),
  }));
  const allowed = new Set(['SECTION', 'DIV', 'H2', 'BUTTON', 'LABEL', 'INPUT', 'SPAN', 'P', 'UL', 'LI', 'TIME', 'MARK']);
  const foreign = [...panel.querySelectorAll('*')].map((e) => e.tagName).filter((t) => !allowed.has(t));
  return {
    open: !panel.hidden,
    items,
    status: document.getElementById('search-status').textContent,
    error: document.getElementById('search-status').classList.contains('error'),
    more: !document.getElementById('search-more').hidden,
    busy: panel.getAttribute('aria-busy') === 'true',
    foreign,
  };";

async fn results(b: &Browser) -> Result<Value> {
    b.js(RESULTS, vec![]).await
}

/// Types a query into the (cleared) search box and waits until the panel answers it:
/// the status line names it and no search is in flight. Returns [`RESULTS`].
async fn search_for(b: &Browser, q: &str) -> Result<Value> {
    b.fill("#search-input", q).await?;
    settle(b, q).await
}

/// Waits until the status line says something about `q` (a count, "no messages
/// match" or an error) and no request is in flight; returns [`RESULTS`].
async fn settle(b: &Browser, q: &str) -> Result<Value> {
    b.wait_js(
        &format!("the search for {q:?} to be answered"),
        "const panel = document.getElementById('search-panel');
         const s = document.getElementById('search-status');
         if (panel.getAttribute('aria-busy') === 'true' || document.getElementById('search-input').value !== arguments[0]) return false;
         return s.textContent.includes('“' + arguments[0].trim() + '”') || s.classList.contains('error');",
        vec![json!(q)],
    )
    .await?;
    // The debounce may still hold a search started by the last keystrokes: let it run.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    b.wait_js(
        "no search in flight",
        "return document.getElementById('search-panel').getAttribute('aria-busy') !== 'true';",
        vec![],
    )
    .await?;
    results(b).await
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

/// The result whose text is `text`.
fn item<'a>(v: &'a Value, text: &str) -> Option<&'a Value> {
    v["items"].as_array()?.iter().find(|i| i["text"] == json!(text))
}

/// The texts of the results, in order.
fn texts(v: &Value) -> Vec<String> {
    items(v).iter().filter_map(|i| i["text"].as_str().map(str::to_string)).collect()
}

fn marks(i: &Value) -> Vec<String> {
    i["marks"].as_array().into_iter().flatten().filter_map(|m| m.as_str().map(str::to_string)).collect()
}

/// Sends keys to whatever has the focus (as a person at the keyboard does).
async fn keys(b: &Browser, k: &str) -> Result<()> {
    let el = b.c.active_element().await?;
    el.send_keys(k).await?;
    Ok(())
}

fn key(k: Key) -> String {
    char::from(k).to_string()
}

/// Waits until the message with text `text` is inside the message list's viewport;
/// returns `{seq, highlighted}` (highlighted: it carries the jump highlight now).
async fn wait_in_view(b: &Browser, text: &str, highlighted: bool) -> Result<Value> {
    b.wait_js(
        &format!("message {text:?} scrolled into view{}", if highlighted { " and highlighted" } else { "" }),
        "const list = document.getElementById('messages');
         for (const m of list.querySelectorAll('article.msg[data-seq]')) {
           if (m.querySelector(':scope > .text')?.textContent !== arguments[0]) continue;
           const a = m.getBoundingClientRect(), v = list.getBoundingClientRect();
           if (a.height === 0 || a.top < v.top - 1 || a.bottom > v.bottom + 1) return null;
           const hl = m.classList.contains('jump-highlight');
           if (arguments[1] && !hl) return null;
           return { seq: Number(m.dataset.seq), highlighted: hl };
         }
         return null;",
        vec![json!(text), json!(highlighted)],
    )
    .await
}

pub async fn search_story(d: &Driver) -> Result<()> {
    let srv = TestServer::start_with(Backend::Sqlite, |c| c.rate_messages_per_10s = 10_000).await;
    let ann_api = srv.user("ann").await;
    let bob_api = srv.user("bob").await;
    let cat_api = srv.user("cat").await;
    let cat_id = cat_api.id().await;
    let plaza = ann_api.create_room("plaza", json!({ "topic": "Everyone" })).await;
    let archive = ann_api.create_room("archive", json!({})).await;
    for room in [plaza, archive] {
        let (s, body) = bob_api.post(&format!("/api/rooms/{room}/join"), json!({})).await;
        ensure!(s == 200, "bob joins {room}: {body}");
    }
    // Where ann may not read: a private room she is not in, one she left, bob's DM with cat.
    let vault = bob_api.create_room("vault", json!({ "private": true })).await;
    let oldteam = bob_api.create_room("oldteam", json!({ "private": true })).await;
    let (s, body) = bob_api.post(&format!("/api/rooms/{oldteam}/members"), json!({ "username": "ann" })).await;
    ensure!(s == 204, "bob adds ann to oldteam: {body}");
    let (s, body) = bob_api.post("/api/dms", json!({ "user_id": cat_id })).await;
    ensure!(s == 200, "bob opens a DM with cat: {body}");
    let dm = body["room"]["id"].as_i64().unwrap_or_default();

    let mut bw = bob_api.ws().await;
    let needle = "The zebra haystack needle is here";
    let needle_seq = bw.say(archive, needle).await.unwrap_or_default();
    for i in 1..=FILLERS {
        bw.say(archive, &format!("filler line {i} about logistics")).await;
    }
    bw.say(vault, "secret vault codes near the café").await;
    bw.say(oldteam, "secret oldteam plan at the café").await;
    bw.say(dm, "secret dm about the café").await;
    let flore = "Rendez-vous au Café de Flore à midi";
    let hostile = "<img src=x onerror=alert(1)> café hostile";
    let emoji = "🎉🎉 party at the café tonight 🎉";
    let creme = "Crème brûlée for dessert";
    let secret = "the secret is more coffee";
    for t in [flore, hostile, emoji, creme, secret] {
        bw.say(plaza, t).await;
    }
    let mut aw = ann_api.ws().await;
    let review = "Ann's café review: five stars";
    aw.say(plaza, review).await;
    let (s, body) = ann_api.post(&format!("/api/rooms/{oldteam}/leave"), json!({})).await;
    ensure!(s == 200 || s == 204, "ann leaves oldteam: {s} {body}");
    // bob may read all three places: the index has them, so ann not finding them
    // below is the access rule at work, not an empty index.
    let (s, body) = bob_api.get("/api/search?q=secret").await;
    ensure!(s == 200 && body["results"].as_array().map(Vec::len) == Some(4), "bob finds the 4 secrets: {body}");

    let ann = d.browser("ann").await?;
    ann.goto(&srv.url("/")).await?;
    ann.sign_in("ann", &password_of("ann")).await?;
    ann.open_conversation("plaza").await?;
    ann.wait_msg(review).await?;

    // "/" in the composer is a character; outside a field it opens the search.
    ann.type_keys("#composer", "/").await?;
    ensure!(
        ann.js("return document.getElementById('composer').value;", vec![]).await? == json!("/"),
        "the slash went into the composer"
    );
    ensure!(!ann.is_visible("#search-panel").await?, "a slash typed in the composer opened the search");
    ann.fill("#composer", "").await?;
    ann.js("document.getElementById('messages').focus();", vec![]).await?;
    keys(&ann, "/").await?;
    ann.wait_js(
        "the search box to have the focus",
        "return !document.getElementById('search-panel').hidden && document.activeElement?.id === 'search-input';",
        vec![],
    )
    .await?;
    let hint = ann.js("return document.getElementById('search-input').placeholder + ' | ' + document.getElementById('search-btn').title;", vec![]).await?;
    ensure!(hint.as_str().is_some_and(|h| h.contains("Ctrl+K")), "the shortcut is shown: {hint}");

    // Accents and case folded, the last word a prefix; marks on exactly those words.
    let v = search_for(&ann, "cafe flo").await?;
    ensure!(items(&v).len() == 1, "one message has café and flo…: {v}");
    let i = item(&v, flore).ok_or_else(|| anyhow::anyhow!("the Flore message: {v}"))?;
    ensure!(marks(i) == ["Café", "Flore"], "marks of the Flore message: {i}");
    ensure!(i["room"] == json!("#plaza") && i["author"] == json!("bob"), "room and author shown: {i}");
    ensure!(i["time"].as_str().is_some_and(|t| t.contains(':')), "a time shown: {i}");
    ensure!(i["role"] == json!("option"), "results are options of a listbox: {i}");
    ensure!(v["status"].as_str().is_some_and(|s| s.starts_with("1 message")), "a count: {v}");

    // Escape gives the focus back; Ctrl+K works from inside a field, selecting the query.
    keys(&ann, &key(Key::Escape)).await?;
    ann.wait_js(
        "the panel to close and the focus to go back to the messages",
        "return document.getElementById('search-panel').hidden && document.activeElement?.id === 'messages';",
        vec![],
    )
    .await?;
    ann.js("document.getElementById('composer').focus();", vec![]).await?;
    keys(&ann, &format!("{}k{}", key(Key::Control), key(Key::Null))).await?;
    ann.wait_js(
        "Ctrl+K to open the search with the last query selected",
        "const i = document.getElementById('search-input');
         return !document.getElementById('search-panel').hidden && document.activeElement === i &&
                i.value === 'cafe flo' && i.selectionStart === 0 && i.selectionEnd === i.value.length;",
        vec![],
    )
    .await?;
    ensure!(
        ann.js("return document.getElementById('composer').value;", vec![]).await? == json!(""),
        "Ctrl+K typed nothing"
    );

    // Emoji before the match, hostile text; only what ann may read.
    let v = search_for(&ann, "café").await?;
    let got = texts(&v);
    ensure!(got == [review, emoji, hostile, flore], "café in plaza, newest first, nothing else: {got:?}");
    for (t, want) in [(review, "café"), (emoji, "café"), (hostile, "café"), (flore, "Café")] {
        let i = item(&v, t).ok_or_else(|| anyhow::anyhow!("{t}: {v}"))?;
        ensure!(marks(i) == [want], "marks of {t:?}: {i}");
    }
    ensure!(item(&v, review).is_some_and(|i| i["author"] == json!("ann")), "ann's own message: {v}");
    ensure!(v["foreign"] == json!([]), "only text and <mark> inside the panel: {v}");
    ensure!(!ann.alert_open().await, "an alert opened");
    let v = search_for(&ann, "creme brulee").await?;
    ensure!(item(&v, creme).is_some_and(|i| marks(i) == ["Crème", "brûlée"]), "crème brûlée: {v}");
    let v = search_for(&ann, "secret").await?;
    ensure!(texts(&v) == [secret], "only the plaza secret (not vault, oldteam or bob's DM with cat): {v}");

    // The author and conversation filters.
    let v = search_for(&ann, "café").await?;
    ensure!(items(&v).len() == 4, "four cafés: {v}");
    ann.fill("#search-author", "ann").await?;
    let v = settle(&ann, "café").await?;
    ensure!(
        items(&v).len() == 1
            && item(&v, review).is_some()
            && v["status"].as_str().is_some_and(|s| s.contains("from @ann")),
        "from ann only: {v}"
    );
    ann.fill("#search-author", "nobody").await?;
    let v = ann
        .wait_js(
            "an unknown author to be said",
            "const s = document.getElementById('search-status');
             return s.classList.contains('error') && s.textContent.includes('nobody') ? s.textContent : null;",
            vec![],
        )
        .await?;
    ensure!(v.as_str().is_some_and(|s| s.contains("Nobody has the username")), "unknown author: {v}");
    ann.fill("#search-author", "").await?;
    ann.wait_text("#search-scope-label", "Only in #plaza").await?;
    let v = search_for(&ann, "logistics").await?;
    ensure!(items(&v).len() == 20 && v["more"] == json!(true), "a first page of 20 and more: {v}");
    ann.click("#search-scope").await?;
    let v = settle(&ann, "logistics").await?;
    ensure!(items(&v).is_empty() && !ann.is_visible("#search-results").await?, "none in plaza: {v}");
    ensure!(v["status"] == json!("No messages match “logistics” in #plaza."), "no result, said plainly: {v}");
    ann.click("#search-scope").await?;
    settle(&ann, "logistics").await?;

    // Paging: "More results" adds the next 20, newest first, no repeats.
    ann.click("#search-more").await?;
    let v = ann
        .wait_js(
            "a second page of results",
            &format!("const v = (() => {{ {RESULTS} }})(); return v.items.length === 40 && !v.busy ? v : null;"),
            vec![],
        )
        .await?;
    let seqs: Vec<i64> = items(&v).iter().filter_map(|i| i["seq"].as_i64()).collect();
    ensure!(seqs.windows(2).all(|w| w[0] > w[1]), "newest first without repeats: {seqs:?}");
    ensure!(
        items(&v).iter().all(|i| i["room"] == json!("#archive") && i["marks"] == json!(["logistics"])),
        "every result marks logistics: {v}"
    );
    ensure!(
        items(&v).first().and_then(|i| i["text"].as_str())
            == Some(format!("filler line {FILLERS} about logistics").as_str()),
        "the newest first: {v}"
    );

    // Errors said plainly: punctuation alone, too long.
    let v = search_for(&ann, "!!!").await?;
    ensure!(
        v["error"] == json!(true) && v["status"].as_str().is_some_and(|s| s.contains("punctuation alone")),
        "empty_query: {v}"
    );
    ensure!(items(&v).is_empty(), "no stale results beside an error: {v}");
    let long = "a".repeat(201);
    let v = search_for(&ann, &long).await?;
    ensure!(
        v["error"] == json!(true) && v["status"].as_str().is_some_and(|s| s.contains("too long")),
        "invalid_query: {v}"
    );

    // Down, Enter: the far-back message in another room, paged in and highlighted.
    let v = search_for(&ann, "zebra hay").await?;
    ensure!(items(&v).len() == 1 && item(&v, needle).is_some_and(|i| marks(i) == ["zebra", "haystack"]), "{v}");
    keys(&ann, &key(Key::Down)).await?;
    ann.wait_js(
        "the first result to be active",
        "const i = document.getElementById('search-input');
         const li = document.getElementById('search-result-0');
         return i.getAttribute('aria-activedescendant') === 'search-result-0' && li.getAttribute('aria-selected') === 'true';",
        vec![],
    )
    .await?;
    let opened = std::time::Instant::now();
    keys(&ann, &key(Key::Enter)).await?;
    ann.wait_room_open("archive").await?;
    let at = wait_in_view(&ann, needle, true).await?;
    // For information (BENCHMARKS-style figures are never asserted): Enter to the
    // message on screen, through four pages of history.
    eprintln!("search: opened a result {FILLERS} messages back in {:.0?}", opened.elapsed());
    ensure!(at["seq"] == json!(needle_seq), "the needle itself: {at}");
    ensure!(!ann.is_visible("#search-panel").await?, "the panel closed on opening a result");
    ensure!(
        ann.js("return location.hash;", vec![]).await? == json!(format!("#room={archive}")),
        "the address names the room"
    );
    let shown = ann.js("return document.querySelectorAll('#messages article.msg[data-seq]').length;", vec![]).await?;
    ensure!(shown.as_u64().is_some_and(|n| n as usize > FILLERS), "history paged back to it: {shown} messages");

    // A click on a result opens it too.
    ann.click("#search-btn").await?;
    let v = search_for(&ann, "Flore").await?;
    let seq = item(&v, flore).and_then(|i| i["seq"].as_i64()).unwrap_or_default();
    ann.click(&format!("#search-results > li[data-seq=\"{seq}\"]")).await?;
    ann.wait_room_open("plaza").await?;
    wait_in_view(&ann, flore, false).await?;

    ensure!(!ann.alert_open().await, "an alert opened");
    let errors = ann.console_errors().await;
    ensure!(errors.is_empty(), "console errors: {errors:#?}");
    ann.close(d).await?;
    Ok(())
}
