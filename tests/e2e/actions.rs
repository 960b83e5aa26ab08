//! Message actions in the web client (issue 12, PROTOCOL.md §3.8), in real Chromium
//! against the real server, with a third person (`cat`) on a protocol-level socket:
//!
//! - edit: the toolbar's Edit and Up-arrow in an empty composer, Escape cancels;
//!   "(edited)" shows on both sides;
//! - delete after a confirmation leaves a "message deleted" tombstone; the room's
//!   owner, its moderators and the admin get Delete on others' messages, others do
//!   not (nor in DMs);
//! - reactions: the picker (quick row and search), counts, who reacted, toggling;
//! - reply: the bar, the quote that jumps to the original (paging older history in)
//!   and highlights it, and "original message deleted or no longer kept";
//! - mentions: the autocomplete, `<@ID>` on the wire, chips, the sidebar's mention
//!   badge (live and from `hello`); hostile text renders as text;
//! - notification levels: muted rooms are quiet except for mentions; a browser
//!   notification for a hidden tab follows the level;
//! - live and resume: a browser that was offline (network emulated off) while cat
//!   edited, deleted and reacted ends with the same view as one that saw it live, and
//!   as a fresh page load.

use anyhow::{Context, Result, anyhow, ensure};
use fantoccini::key::Key;
use serde_json::{Value, json};

use crate::{
    browser::{Browser, Cdp, Driver},
    common::{Backend, TestServer, Ws, password_of},
};

async fn cdp(b: &Browser, cmd: &'static str, params: Value) -> Result<()> {
    b.c.issue_cmd(Cdp { cmd, params }).await.map_err(|e| anyhow!("{}: {cmd}: {e}", b.name))?;
    Ok(())
}

/// Turns the browser's network off or on (the page gets `offline`/`online` events and
/// no connection gets through while it is off).
async fn network(b: &Browser, online: bool) -> Result<()> {
    cdp(b, "Network.enable", json!({})).await?;
    cdp(
        b,
        "Network.emulateNetworkConditions",
        json!({ "offline": !online, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1 }),
    )
    .await
}

/// A selector for the message whose `.text` reads `text` (waits for it).
async fn msg(b: &Browser, text: &str) -> Result<String> {
    let v = b
        .wait_js(
            &format!("message {text:?} with a seq"),
            "for (const m of document.querySelectorAll('#messages article.msg[data-seq]'))
               if (m.querySelector(':scope > .text')?.textContent === arguments[0])
                 return `#messages article.msg[data-seq=\"${m.dataset.seq}\"]`;
             return null;",
            vec![json!(text)],
        )
        .await?;
    Ok(v.as_str().unwrap_or_default().to_string())
}

/// Clicks a toolbar button of a message (focusing it first, as a keyboard user
/// would; the toolbar shows while the focus is inside the message).
async fn act(b: &Browser, msg_css: &str, action: &str) -> Result<()> {
    let css = format!("{msg_css} .msg-toolbar .msg-{action}");
    b.wait_js(
        &format!("the {action} button of {msg_css}"),
        "const el = document.querySelector(arguments[0]); if (!el) return false; el.focus(); return true;",
        vec![json!(css)],
    )
    .await?;
    b.click(&css).await
}

/// The toolbar actions offered on a message.
async fn actions_of(b: &Browser, msg_css: &str) -> Result<Vec<String>> {
    let v = b
        .js(
            "return [...document.querySelectorAll(arguments[0] + ' .msg-toolbar button')].map((x) => x.dataset.action);",
            vec![json!(msg_css)],
        )
        .await?;
    Ok(v.as_array().into_iter().flatten().filter_map(|x| x.as_str().map(str::to_string)).collect())
}

/// What the message list shows that does not depend on who looks: per kept message
/// from seq `arguments[1]` on, its text, deleted/edited, reactions (emoji and count)
/// and reply quote; with `arguments[0]`, also which reactions are pressed (for
/// comparing one person's views).
const SNAPSHOT: &str = "
  return [...document.querySelectorAll('#messages article.msg[data-seq]')]
    .filter((m) => Number(m.dataset.seq) >= arguments[1]).map((m) => ({
    seq: Number(m.dataset.seq),
    text: m.querySelector(':scope > .text')?.textContent ?? null,
    deleted: m.classList.contains('deleted'),
    edited: !!m.querySelector(':scope > .edited'),
    reactions: [...m.querySelectorAll('.reaction')].map((r) =>
      r.dataset.emoji + ' ' + r.querySelector('.reaction-count').textContent + (arguments[0] ? ' ' + r.getAttribute('aria-pressed') : '')),
    quote: m.querySelector(':scope > .reply-quote')?.textContent ?? null,
  }));";

async fn snapshot(b: &Browser, mine: bool, from: i64) -> Result<Value> {
    b.js(SNAPSHOT, vec![json!(mine), json!(from)]).await
}

/// Waits until `b` shows the same snapshot as `want` (compared as JSON values, so
/// key order does not matter), and returns it.
async fn wait_same(b: &Browser, what: &str, mine: bool, from: i64, want: &Value) -> Result<Value> {
    let deadline = std::time::Instant::now() + crate::browser::WAIT;
    loop {
        let got = snapshot(b, mine, from).await?;
        if &got == want {
            return Ok(got);
        }
        if std::time::Instant::now() > deadline {
            return Err(anyhow!("{}: timed out waiting for {what}: shows {got}, wanted {want}", b.name));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The sidebar item of a conversation: (mention badge text or "", unread badge number
/// or 0, li classes).
async fn side(b: &Browser, room: i64) -> Result<Value> {
    b.js(
        "const li = document.querySelector(`#room-list > li[data-room-id=\"${arguments[0]}\"]`);
         if (!li) return null;
         const mb = li.querySelector('.mention-badge');
         const u = li.querySelector('.unread');
         return { mention: mb && !mb.hidden ? mb.textContent : '', unread: u && !u.hidden ? Number(u.textContent) : 0,
                  muted: li.classList.contains('muted'), bold: li.classList.contains('has-unread') };",
        vec![json!(room)],
    )
    .await
}

async fn wait_side(b: &Browser, room: i64, what: &str, check: &str) -> Result<()> {
    b.wait_js(
        what,
        &format!(
            "const li = document.querySelector(`#room-list > li[data-room-id=\"${{arguments[0]}}\"]`);
             if (!li) return false;
             const mb = li.querySelector('.mention-badge');
             const u = li.querySelector('.unread');
             const s = {{ mention: mb && !mb.hidden ? mb.textContent : '', unread: u && !u.hidden ? Number(u.textContent) : 0,
                         muted: li.classList.contains('muted'), bold: li.classList.contains('has-unread') }};
             return ({check});"
        ),
        vec![json!(room)],
    )
    .await
    .map(|_| ())
}

/// Loads the page afresh (a new document: the store starts empty) on a conversation.
async fn reload(b: &Browser, srv: &TestServer, room: i64) -> Result<()> {
    b.goto("about:blank").await?;
    b.goto(&srv.url(&format!("/#room={room}"))).await
}

async fn enter(b: &Browser) -> Result<()> {
    b.type_keys("#composer", &char::from(Key::Enter).to_string()).await
}

/// Reads frames until the `ack` of the command with `id`-less request `v`.
async fn request_ok(ws: &mut Ws, v: Value) -> Result<()> {
    let what = v.to_string();
    match ws.request(v).await {
        rtm::ws::protocol::ServerFrame::Ack { .. } => Ok(()),
        other => Err(anyhow!("{what} failed: {other:?}")),
    }
}

pub async fn message_actions(d: &Driver) -> Result<()> {
    let srv = TestServer::start(Backend::Sqlite).await;
    // ann is the first account: the admin. ben owns the room "plans"; cat owns "cats".
    let ann_api = srv.user("ann").await;
    let ben_api = srv.user("ben").await;
    let cat_api = srv.user("cat").await;
    let (ann_id, ben_id) = (ann_api.id().await, ben_api.id().await);
    let plans = ben_api.create_room("plans", json!({ "topic": "What next" })).await;
    let cats = cat_api.create_room("cats", json!({})).await;
    for (c, room) in [(&ann_api, plans), (&cat_api, plans), (&ben_api, cats)] {
        let (s, body) = c.post(&format!("/api/rooms/{room}/join"), json!({})).await;
        ensure!(s == 200, "join {room}: {body}");
    }
    let mut cat = cat_api.ws().await;

    let ann = d.browser("ann").await?;
    let ben = d.browser("ben").await?;
    for (b, name) in [(&ann, "ann"), (&ben, "ben")] {
        b.goto(&srv.url("/")).await?;
        b.sign_in(name, &password_of(name)).await?;
        b.open_conversation("plans").await?;
    }

    // ---------------------------------------------------------------- edit
    ben.send_message("helo world").await?;
    let m1 = msg(&ben, "helo world").await?;
    // Up-arrow in the empty composer edits the last message; Escape cancels.
    ben.type_keys("#composer", &char::from(Key::Up).to_string()).await?;
    ben.wait_text("#composer-mode .composer-mode-label", "Editing your message").await?;
    ensure!(ben.js("return document.getElementById('composer').value;", vec![]).await? == json!("helo world"));
    ben.type_keys("#composer", &char::from(Key::Escape).to_string()).await?;
    ben.wait_js(
        "Escape to end editing",
        "return document.getElementById('composer-mode').hidden && document.getElementById('composer').value === '';",
        vec![],
    )
    .await?;
    ben.type_keys("#composer", &char::from(Key::Up).to_string()).await?;
    ben.wait_visible("#composer-mode").await?;
    ben.fill("#composer", "hello world").await?;
    enter(&ben).await?;
    for b in [&ann, &ben] {
        b.wait_js(
            "the edit, marked edited",
            "const m = document.querySelector(arguments[0]);
             return !!m && m.querySelector(':scope > .text').textContent === 'hello world' && !!m.querySelector(':scope > .edited');",
            vec![json!(m1)],
        )
        .await?;
    }
    ensure!(ben.msg_count("hello world").await? == 1, "an edit is not a new message");
    // The toolbar's Edit does the same.
    act(&ben, &m1, "edit").await?;
    ben.wait_js("the text to edit", "return document.getElementById('composer').value === 'hello world';", vec![])
        .await?;
    ben.fill("#composer", "hello, world").await?;
    enter(&ben).await?;
    ann.wait_msg("hello, world").await?;

    // ---------------------------------------------------------------- who may delete
    let cat_seq = cat.say(plans, "cat was here").await.context("cat's message has a seq")?;
    let cat_css = format!("#messages article.msg[data-seq=\"{cat_seq}\"]");
    ann.wait_msg("cat was here").await?;
    ben.wait_msg("cat was here").await?;
    let theirs = actions_of(&ann, &cat_css).await?;
    ensure!(theirs == ["react", "reply", "delete"], "the admin may delete others' messages: {theirs:?}");
    let theirs = actions_of(&ben, &cat_css).await?;
    ensure!(theirs == ["react", "reply", "delete"], "the owner may delete others' messages: {theirs:?}");
    let own = actions_of(&ben, &m1).await?;
    ensure!(own == ["react", "reply", "edit", "delete"], "one's own message: {own:?}");
    // One tab stop per toolbar; arrow keys move inside it.
    ben.js("document.querySelector(arguments[0] + ' .msg-toolbar button').focus();", vec![json!(m1)]).await?;
    let right = char::from(Key::Right).to_string();
    ben.type_keys(&format!("{m1} .msg-toolbar button[tabindex=\"0\"]"), &right).await?;
    ben.type_keys(&format!("{m1} .msg-toolbar button[tabindex=\"0\"]"), &right).await?;
    ben.wait_js(
        "Edit focused after two arrow presses",
        "const a = document.activeElement;
         return a?.dataset.action === 'edit' && a.tabIndex === 0 &&
                document.querySelectorAll(arguments[0] + ' .msg-toolbar button[tabindex=\"0\"]').length === 1;",
        vec![json!(m1)],
    )
    .await?;
    // In cat's room ben is a plain member: no Delete on cat's message.
    cat.say(cats, "my room, my rules").await;
    ben.open_conversation("cats").await?;
    let rules = msg(&ben, "my room, my rules").await?;
    let plain = actions_of(&ben, &rules).await?;
    ensure!(plain == ["react", "reply"], "a member may not delete others' messages: {plain:?}");
    // Made a moderator of cat's room, he may (reopened until his client knows).
    let (s, body) =
        cat_api.put(&format!("/api/rooms/{cats}/members/{ben_id}/role"), json!({"role": "moderator"})).await;
    ensure!(s == 204, "make ben a moderator: {body}");
    let deadline = std::time::Instant::now() + crate::browser::WAIT;
    loop {
        ben.open_conversation("plans").await?;
        ben.open_conversation("cats").await?;
        let rules = msg(&ben, "my room, my rules").await?;
        let now = actions_of(&ben, &rules).await?;
        if now == ["react", "reply", "delete"] {
            break;
        }
        ensure!(std::time::Instant::now() < deadline, "a moderator may delete others' messages: {now:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    ben.open_conversation("plans").await?;

    // ---------------------------------------------------------------- delete
    ben.send_message("oops, wrong room").await?;
    let oops = msg(&ben, "oops, wrong room").await?;
    ann.wait_msg("oops, wrong room").await?;
    act(&ben, &oops, "delete").await?;
    ben.wait_visible("#confirm-ok").await?;
    // Cancel first: nothing happens.
    ben.click("#confirm-cancel").await?;
    ensure!(ben.msg_count("oops, wrong room").await? == 1, "cancel keeps the message");
    act(&ben, &oops, "delete").await?;
    ben.click("#confirm-ok").await?;
    // The owner deletes someone else's message.
    act(&ben, &cat_css, "delete").await?;
    ben.click("#confirm-ok").await?;
    for b in [&ann, &ben] {
        for css in [&oops, &cat_css] {
            b.wait_js(
                "a tombstone in place",
                "const m = document.querySelector(arguments[0]);
                 return !!m && m.classList.contains('deleted') && m.querySelector('.text').textContent === 'message deleted' &&
                        !m.querySelector('.msg-toolbar');",
                vec![json!(css)],
            )
            .await?;
        }
    }

    // ---------------------------------------------------------------- reactions
    act(&ann, &m1, "react").await?;
    ann.wait_visible("#reaction-picker").await?;
    // Escape closes the picker and gives the focus back.
    ann.type_keys("#reaction-picker .reaction-quick button", &char::from(Key::Escape).to_string()).await?;
    ann.wait_js(
        "the picker closed, focus back on React",
        "return document.getElementById('reaction-picker').hidden && document.activeElement?.dataset.action === 'react';",
        vec![],
    )
    .await?;
    act(&ann, &m1, "react").await?;
    ann.click("#reaction-picker .reaction-quick button[data-emoji=\"👍\"]").await?;
    let chip = format!("{m1} .reaction[data-emoji=\"👍\"]");
    for (b, pressed) in [(&ann, "true"), (&ben, "false")] {
        b.wait_js(
            "👍 1",
            "const r = document.querySelector(arguments[0]);
             return !!r && r.querySelector('.reaction-count').textContent === '1' && r.getAttribute('aria-pressed') === arguments[1];",
            vec![json!(chip), json!(pressed)],
        )
        .await?;
    }
    // Ben adds his by clicking the reaction; the title names both.
    ben.click(&chip).await?;
    for b in [&ann, &ben] {
        b.wait_js(
            "👍 2",
            "const r = document.querySelector(arguments[0]);
             return !!r && r.querySelector('.reaction-count').textContent === '2';",
            vec![json!(chip)],
        )
        .await?;
    }
    let title = ann.js("return document.querySelector(arguments[0]).title;", vec![json!(chip)]).await?;
    let title = title.as_str().unwrap_or_default();
    ensure!(title.contains("you") && title.contains("ben"), "who reacted: {title:?}");
    // Ann takes hers back; the search finds 🎉 by name.
    ann.click(&chip).await?;
    ben.wait_js(
        "👍 back to 1",
        "const r = document.querySelector(arguments[0]); return !!r && r.querySelector('.reaction-count').textContent === '1';",
        vec![json!(chip)],
    )
    .await?;
    act(&ben, &m1, "react").await?;
    ben.fill("#reaction-search", "tada").await?;
    ben.click("#reaction-results button[data-emoji=\"🎉\"]").await?;
    ann.wait_visible(&format!("{m1} .reaction[data-emoji=\"🎉\"]")).await?;

    // ---------------------------------------------------------------- reply
    ann.send_message("Lunch at noon? Bring the maps.").await?;
    let lunch = msg(&ben, "Lunch at noon? Bring the maps.").await?;
    act(&ben, &lunch, "reply").await?;
    ben.wait_text("#composer-mode .composer-mode-label", "Replying to @ann: Lunch at noon? Bring the maps.").await?;
    ben.type_keys("#composer", "Agreed").await?;
    enter(&ben).await?;
    let agreed = msg(&ann, "Agreed").await?;
    for b in [&ann, &ben] {
        b.wait_text(&format!("{agreed} > .reply-quote"), "@ann Lunch at noon? Bring the maps.").await?;
    }
    // Esc cancels a reply.
    act(&ann, &agreed, "reply").await?;
    ann.wait_visible("#composer-mode").await?;
    ann.type_keys("#composer", &char::from(Key::Escape).to_string()).await?;
    ann.wait_js("the reply bar gone", "return document.getElementById('composer-mode').hidden;", vec![]).await?;

    // The quote jumps to the original, loading older history when it is not shown:
    // 160 messages later (from two people: the send budget is per person), after a
    // reload only the newest pages are there.
    let mut ann_ws = ann_api.ws().await;
    for i in 0..80 {
        cat.say(plans, &format!("filler {i}")).await;
        ann_ws.say(plans, &format!("more filler {i}")).await;
    }
    drop(ann_ws);
    let reply_to = lunch.split('"').nth(1).unwrap_or_default().parse::<i64>()?;
    let late_seq = match cat
        .request(
            json!({"type":"send","room":plans,"client_id":"cat-late-reply","text":"Late reply","reply_to":reply_to}),
        )
        .await
    {
        rtm::ws::protocol::ServerFrame::Ack { seq: Some(seq), .. } => seq,
        other => return Err(anyhow!("the late reply: {other:?}")),
    };
    // Ben has read it all (else opening the room would page back to his first unread).
    let mut ben_ws = ben_api.ws().await;
    request_ok(&mut ben_ws, json!({"type":"read","room":plans,"seq":late_seq})).await?;
    drop(ben_ws);
    reload(&ben, &srv, plans).await?;
    ben.wait_live().await?;
    let late = msg(&ben, "Late reply").await?;
    let loaded = ben
        .js("return [...document.querySelectorAll('#messages article.msg[data-seq]')].map((m) => Number(m.dataset.seq));", vec![])
        .await?;
    ensure!(ben.msg_count("Lunch at noon? Bring the maps.").await? == 0, "the original is not loaded yet: {loaded}");
    ben.click(&format!("{late} > .reply-quote")).await?;
    let jumped = ben
        .wait_js(
            "the original, loaded, scrolled to and highlighted",
            "const m = document.querySelector(arguments[0]);
             if (!m || !m.classList.contains('jump-highlight')) return false;
             const r = m.getBoundingClientRect(), v = document.getElementById('messages').getBoundingClientRect();
             return r.top >= v.top && r.bottom <= v.bottom;",
            vec![json!(lunch)],
        )
        .await;
    if let Err(e) = jumped {
        let state = ben
            .js(
                "return import('/js/store.js').then((s) => { const r = s.currentRoom();
                   return [r.loaded, r.hasMore, r.loadingHistory, r.resyncing, s.oldestSeq(r), r.events.length,
                           document.getElementById('toast').textContent, s.state.conn]; });",
                vec![],
            )
            .await?;
        return Err(e.context(format!("loaded, more, loading, resyncing, oldest, events, toast, conn: {state}")));
    }
    // Once the original is deleted, the quote says so (live, and from the server).
    act(&ann, &lunch, "delete").await?;
    ann.click("#confirm-ok").await?;
    for b in [&ann, &ben] {
        b.wait_js(
            "the quote of a deleted message",
            "const q = document.querySelector(arguments[0] + ' > .reply-quote');
             return !!q && q.classList.contains('missing') && q.textContent.includes('original message deleted or no longer kept');",
            vec![json!(late)],
        )
        .await?;
    }
    reload(&ben, &srv, plans).await?;
    ben.wait_live().await?;
    ben.wait_js(
        "the quote of a deleted message, after a reload",
        "const q = document.querySelector(arguments[0] + ' > .reply-quote');
         return !!q && q.classList.contains('missing');",
        vec![json!(late)],
    )
    .await?;

    // ---------------------------------------------------------------- mentions
    ben.open_conversation("cats").await?;
    ann.type_keys("#composer", "@be").await?;
    ann.wait_js(
        "ben offered",
        "const l = document.getElementById('mention-suggest');
         return !l.hidden && [...l.querySelectorAll('li')].some((li) => li.dataset.username === 'ben');",
        vec![],
    )
    .await?;
    ann.type_keys("#composer", &char::from(Key::Enter).to_string()).await?;
    ann.wait_js("@ben in the composer", "return document.getElementById('composer').value === '@ben ';", vec![])
        .await?;
    ann.type_keys("#composer", "can you check?").await?;
    enter(&ann).await?;
    // On the wire, an id; on screen, a name.
    let check = msg(&ann, "@ben can you check?").await?;
    let (s, hist) = cat_api.get(&format!("/api/rooms/{plans}/messages?limit=5")).await;
    ensure!(s == 200, "history: {hist}");
    let wire = format!("<@{ben_id}> can you check?");
    ensure!(
        hist["events"].as_array().into_iter().flatten().any(|e| e["text"] == json!(wire)),
        "the sent text holds <@{ben_id}>: {hist}"
    );
    ensure!(ann.is_visible(&format!("{check} .mention-chip")).await?, "a chip for @ben");
    // Ben, in another room, gets a mention badge beside the unread count.
    wait_side(&ben, plans, "plans: @1 and unread", "s.mention === '@1' && s.unread >= 1").await?;
    // From hello, too.
    reload(&ben, &srv, cats).await?;
    ben.wait_live().await?;
    wait_side(&ben, plans, "plans: @1 after a reload", "s.mention === '@1'").await?;
    ben.open_conversation("plans").await?;
    let check_b = msg(&ben, "@ben can you check?").await?;
    ben.wait_js(
        "the mention marked for ben",
        "const m = document.querySelector(arguments[0]);
         return m.classList.contains('mention') && m.querySelector('.mention-chip.me')?.textContent === '@ben';",
        vec![json!(check_b)],
    )
    .await?;
    wait_side(&ben, plans, "the badge cleared once read", "s.mention === '' && s.unread === 0").await?;

    // Hostile text: an id of no one, a mention in code, HTML: all shown as text.
    let hostile = format!("<@999> and `<@{ann_id}>` and <b>bold</b><img src=x onerror=\"window.__pwned=1\">");
    cat.say(plans, &hostile).await;
    let shown = format!("<@999> and <@{ann_id}> and <b>bold</b><img src=x onerror=\"window.__pwned=1\">");
    for b in [&ann, &ben] {
        let css = msg(b, &shown).await?;
        let v = b
            .js(
                "const t = document.querySelector(arguments[0] + ' > .text');
                 return { chips: t.querySelectorAll('.mention-chip').length, code: t.querySelector('code')?.textContent,
                          elements: [...t.querySelectorAll('*')].map((e) => e.tagName), pwned: !!window.__pwned };",
                vec![json!(css)],
            )
            .await?;
        ensure!(v["chips"] == json!(0), "no chip for an unknown id or inside code: {v}");
        ensure!(v["code"] == json!(format!("<@{ann_id}>")), "a mention in code stays literal: {v}");
        ensure!(v["elements"] == json!(["CODE"]), "no element from the text's HTML: {v}");
        ensure!(v["pwned"] == json!(false), "no script ran: {v}");
    }

    // A rename reaches the chips (user_updated).
    let (s, body) = ben_api.patch("/api/me", json!({ "username": "benjamin" })).await;
    ensure!(s == 200, "rename: {body}");
    ann.wait_text(&format!("{check} .mention-chip"), "@benjamin").await?;

    // ---------------------------------------------------------------- notification level
    ben.select("#notify-level", "muted").await?;
    ben.open_conversation("cats").await?;
    wait_side(&ben, plans, "plans muted", "s.muted").await?;
    cat.say(plans, "some noise").await;
    ann.wait_msg("some noise").await?;
    // A muted room stays quiet: no bold, no count...
    let s = side(&ben, plans).await?;
    ensure!(s["unread"] == json!(0) && s["bold"] == json!(false), "a muted room is quiet: {s}");
    // ...except for mentions.
    let for_you = cat.say(plans, &format!("<@{ben_id}> this one is for you")).await.context("seq")?;
    wait_side(&ben, plans, "a mention in a muted room", "s.mention === '@1' && s.unread === 0").await?;
    // An edit that takes the mention out takes the badge with it.
    request_ok(&mut cat, json!({"type":"edit","room":plans,"seq":for_you,"text":"never mind"})).await?;
    wait_side(&ben, plans, "the mention edited away", "s.mention === ''").await?;
    reload(&ben, &srv, plans).await?;
    ben.wait_live().await?;
    ben.wait_js("muted after a reload", "return document.getElementById('notify-level').value === 'muted';", vec![])
        .await?;

    // Browser notifications while the tab is hidden, by level. The page's Notification
    // is wrapped to record what is shown (the real one is still called).
    cdp(&ben, "Browser.grantPermissions", json!({ "permissions": ["notifications"], "origin": srv.origin() })).await?;
    ben.click("#notify-btn").await?;
    ben.wait_js(
        "notifications on",
        "return document.getElementById('notify-btn').getAttribute('aria-pressed') === 'true';",
        vec![],
    )
    .await?;
    ben.open_conversation("cats").await?;
    ben.js(
        "window.__shown = [];
         const Real = window.Notification;
         window.Notification = class extends Real { constructor(t, o) { window.__shown.push(t); super(t, o); } };
         Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });",
        vec![],
    )
    .await?;
    // Muted: nothing alerts, not even a mention (the sidebar still shows its badge).
    cat.say(plans, "muted chatter").await;
    cat.say(plans, &format!("<@{ben_id}> muted but mentioned")).await;
    // All (the default): every message.
    cat.say(cats, "all-level chatter").await;
    ben.wait_js("a notification for #cats", "return window.__shown.length >= 1;", vec![]).await?;
    // Mentions only: a mention alerts, other messages do not.
    ben.select("#notify-level", "mentions").await?;
    ben.wait_js(
        "cats at 'mentions'",
        "return import('/js/store.js').then((s) => s.currentRoom().info.notify === 'mentions');",
        vec![],
    )
    .await?;
    cat.say(cats, "chatter nobody is told about").await;
    cat.say(cats, &format!("<@{ben_id}> this one alerts")).await;
    let shown =
        ben.wait_js("two notifications", "return window.__shown.length >= 2 ? window.__shown : null;", vec![]).await?;
    ensure!(
        shown == json!(["cat in #cats", "cat mentioned you in #cats"]),
        "muted: nothing; all: every message; mentions: mentions only: {shown}"
    );
    ben.js("delete document.hidden; window.Notification = Object.getPrototypeOf(window.Notification);", vec![]).await?;

    // ---------------------------------------------------------------- live and resume
    ben.open_conversation("plans").await?;
    let s1 = cat.say(plans, "first draft").await.context("seq")?;
    let s2 = cat.say(plans, "to be removed").await.context("seq")?;
    let s3 = cat.say(plans, "react to me").await.context("seq")?;
    msg(&ann, "react to me").await?;
    msg(&ben, "react to me").await?;
    ben.js("window.__sameTab = true;", vec![]).await?;
    network(&ben, false).await?;
    ben.wait_js(
        "ben's socket to drop",
        "return document.getElementById('conn-state').dataset.state !== 'live';",
        vec![],
    )
    .await?;
    request_ok(&mut cat, json!({"type":"edit","room":plans,"seq":s1,"text":"final draft"})).await?;
    request_ok(&mut cat, json!({"type":"delete","room":plans,"seq":s2})).await?;
    request_ok(&mut cat, json!({"type":"react","room":plans,"seq":s3,"emoji":"🎉"})).await?;
    let react_me = format!("#messages article.msg[data-seq=\"{s3}\"]");
    act(&ann, &react_me, "react").await?;
    ann.click("#reaction-picker .reaction-quick button[data-emoji=\"👀\"]").await?;
    cat.say(plans, "after the break").await;
    ann.wait_msg("after the break").await?;
    ann.wait_visible(&format!("{react_me} .reaction[data-emoji=\"👀\"]")).await?;
    ann.wait_js(
        "ann sees the delete",
        "return !!document.querySelector(`#messages article.msg.deleted[data-seq=\"${arguments[0]}\"]`);",
        vec![json!(s2)],
    )
    .await?;
    ensure!(ben.msg_count("after the break").await? == 0, "ben saw nothing while offline");
    ensure!(
        ben.js("return document.getElementById('conn-state').dataset.state;", vec![]).await? != json!("live"),
        "ben stayed offline while the others acted"
    );
    let live = snapshot(&ann, false, s1).await?;
    ensure!(live.as_array().is_some_and(|a| a.len() == 4), "ann's view of the four messages: {live}");
    network(&ben, true).await?;
    ben.wait_live().await?;
    ben.wait_msg("after the break").await?;
    ensure!(ben.js("return window.__sameTab === true;", vec![]).await? == json!(true), "caught up without a reload");
    let resumed = wait_same(&ben, "ben's view (resumed) to match ann's (live)", false, s1, &live).await?;
    let edited = resumed
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["seq"] == json!(s1))
        .ok_or_else(|| anyhow!("the edited message is shown"))?;
    ensure!(edited["text"] == json!("final draft") && edited["edited"] == json!(true), "{edited}");
    // And the same as a fresh load (history returns current state), for ben himself.
    let mine_before = snapshot(&ben, true, s1).await?;
    reload(&ben, &srv, plans).await?;
    ben.wait_live().await?;
    ben.wait_msg("after the break").await?;
    wait_same(&ben, "ben's reloaded view to match his resumed one", true, s1, &mine_before).await?;

    for (b, was_offline) in [(&ann, false), (&ben, true)] {
        // A reconnect attempt that came due while ben's network was emulated off fails
        // with this error, which Chromium logs as SEVERE: the emulation's doing, not
        // the app's (the first retry comes ~1 s after the drop; on a slow run the
        // offline part above takes longer). Ann's network never went off.
        let errors: Vec<String> = b
            .console_errors()
            .await
            .into_iter()
            .filter(|l| !(was_offline && l.contains("net::ERR_INTERNET_DISCONNECTED")))
            .collect();
        ensure!(errors.is_empty(), "{}: console errors: {errors:?}", b.name);
    }
    ann.close(d).await?;
    ben.close(d).await?;
    Ok(())
}
