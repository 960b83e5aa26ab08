//! Two people in two browsers: sign up through the form, create a room with a
//! retention choice, join it through "browse", chat both ways, see each other online
//! and typing, exchange direct messages from the people directory; then one closes
//! their browser, receives a DM while away, and finds it (unread badge, then the
//! message) after signing in again in a new browser.
//!
//! Then reading (issue 12): someone posts 60 messages in a room while the reader is in
//! another; opening it shows the "New messages" divider at the first unread one,
//! scrolled there; the read marker (on the server) moves only as far as what was on
//! screen, and to the end once the reader scrolls there; a tab in the background reads
//! nothing. Messages of one author are grouped under one header with an avatar and the
//! full name. Drafts survive a reload. The emoji completion and picker, and the
//! composer's mode hook.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use fantoccini::key::Key;
use serde_json::{Value, json};

use crate::{
    browser::{Browser, Driver},
    common::{Backend, Client, TestServer},
};

const PASSWORD: &str = "correct horse battery";

/// `HH:MM`, as the message list shows the local time.
fn is_hh_mm(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 5 && b[2] == b':' && [0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit())
}

/// A message row shows who wrote it and when (time on the row, full date on hover).
/// Waits until the message with exactly `text` is in the state `cond` says, a JS
/// expression over `v`: `{collapsed, clipped, button, expanded}` (its text's collapse,
/// whether content is cut off, the Show more/less button's text and aria-expanded).
async fn wait_long(b: &Browser, what: &str, text: &str, cond: &str) -> Result<()> {
    let script = format!(
        "const m = [...document.querySelectorAll('#messages .msg')]
           .find((e) => e.querySelector('.text')?.textContent === arguments[0]);
         if (!m) return false;
         const t = m.querySelector(':scope > .text'), b = m.querySelector(':scope > .show-more');
         const v = {{ collapsed: t.classList.contains('collapsed'), clipped: t.scrollHeight > t.clientHeight + 1,
                     button: b ? b.textContent : null, expanded: b ? b.getAttribute('aria-expanded') : null }};
         return {cond};"
    );
    b.wait_js(what, &script, vec![json!(text)]).await.map(|_| ())
}

/// `author` is the full name shown (the username is in the name's title).
fn check_shown(m: &Value, author: &str, own: bool) -> Result<()> {
    ensure!(m["author"] == json!(author), "author should be {author}: {m}");
    ensure!(m["own"] == json!(own), "own should be {own}: {m}");
    ensure!(is_hh_mm(m["time"].as_str().unwrap_or("")), "time should be HH:MM: {m}");
    let year = m["year"].to_string();
    ensure!(m["title"].as_str().is_some_and(|t| t.contains(&year)), "the full date should be in the title: {m}");
    Ok(())
}

/// Waits until the message with `text` shows `author` (full name) with `@username` in
/// the name's title, then checks the row as [`check_shown`] does.
async fn wait_shown(b: &Browser, text: &str, author: &str, username: &str, own: bool, delivered: bool) -> Result<()> {
    b.wait_js(
        &format!("{text:?} shown as written by {author}"),
        "for (const m of document.querySelectorAll('#messages .msg')) {
           if (m.querySelector('.text')?.textContent !== arguments[0]) continue;
           const a = m.querySelector('.author');
           return !!a && a.textContent === arguments[1] && a.title === '@' + arguments[2];
         }
         return false;",
        vec![json!(text), json!(author), json!(username)],
    )
    .await?;
    let m = if delivered { b.wait_msg_delivered(text).await? } else { b.wait_msg(text).await? };
    check_shown(&m, author, own)
}

/// Is `handle` listed online in the members panel?
async fn wait_member_online(b: &Browser, handle: &str, online: bool) -> Result<()> {
    b.wait_js(
        &format!("{handle} {} in the members panel", if online { "online" } else { "offline" }),
        "for (const li of document.querySelectorAll('#members > li.member')) {
           if (li.querySelector('.member-handle')?.textContent === arguments[0])
             return li.classList.contains('online') === arguments[1] &&
                    li.querySelector('.dot').classList.contains('online') === arguments[1];
         }
         return false;",
        vec![json!(handle), json!(online)],
    )
    .await
    .map(|_| ())
}

/// The unread badge of a sidebar item: its number, or 0 when hidden.
async fn badge(b: &Browser, li: &str) -> Result<u64> {
    let v = b
        .js(
            "const u = document.querySelector(arguments[0] + ' .unread');
             return !u || u.hidden ? 0 : Number(u.textContent);",
            vec![json!(li)],
        )
        .await?;
    Ok(v.as_u64().unwrap_or(0))
}

pub async fn two_people_chat(d: &Driver) -> Result<()> {
    talking(d).await.context("two people talking")?;
    reading(d).await.context("reading")
}

async fn talking(d: &Driver) -> Result<()> {
    let srv = TestServer::start(Backend::Sqlite).await;
    let home = srv.url("/");
    let alice = d.browser("alice").await?;
    let bob = d.browser("bob").await?;
    alice.goto(&home).await?;
    bob.goto(&home).await?;
    alice.sign_up("Alice", "Liddell", "alice", PASSWORD).await?;
    // An empty form names every empty field, not only the first the server checks.
    bob.click("#show-signup").await?;
    bob.click("#signup-form button[type=submit]").await?;
    bob.wait_text("#signup-error", "Fill in your first name, last name, email, username and password.").await?;
    let invalid =
        bob.js("return document.querySelectorAll('#signup-form [aria-invalid=true]').length;", vec![]).await?;
    ensure!(invalid == json!(5), "every empty field marked: {invalid}");
    // A taken username is refused inline, on the field it is about.
    for (field, value) in [
        ("first_name", "Bob"),
        ("last_name", "Marley"),
        ("email", "bob@example.org"),
        ("username", "alice"),
        ("password", PASSWORD),
    ] {
        bob.fill(&format!("#signup-form [name={field}]"), value).await?;
    }
    bob.click("#signup-form button[type=submit]").await?;
    bob.wait_text("#signup-error", "That username is already taken").await?;
    bob.wait_js(
        "the username field marked invalid",
        "return document.querySelector('#signup-form [name=username]').getAttribute('aria-invalid') === 'true';",
        vec![],
    )
    .await?;
    bob.sign_up("Bob", "Marley", "bob", PASSWORD).await?;

    // Alice creates a room that keeps messages for 7 days.
    alice.click("#new-room-btn").await?;
    alice.fill("#new-room-form [name=name]", "general").await?;
    alice.fill("#new-room-form [name=topic]", "Anything goes").await?;
    alice.select("#new-room-form [name=retention]", "days").await?;
    alice.wait_visible("#new-room-form [name=keep_days]").await?;
    ensure!(!alice.is_visible("#new-room-form [name=keep_messages]").await?, "only the days field for 'days'");
    alice.fill("#new-room-form [name=keep_days]", "7").await?;
    alice.click("#new-room-form button[type=submit]").await?;
    alice.wait_room_open("general").await?;
    alice.wait_js("the dialog to close", "return !document.getElementById('new-room-dialog').open;", vec![]).await?;
    alice.wait_text("#room-topic", "Anything goes").await?;
    alice.wait_text("#room-retention", "Keeps messages for 7 days.").await?;

    // Bob finds it in "browse rooms" (with what the server says about it) and joins.
    bob.click("#browse-btn").await?;
    let item = bob.wait_item("#browse-results", ".browse-name", "#general").await?;
    let meta = bob.text(&format!("{item} .browse-meta")).await?;
    ensure!(meta.contains("1 member") && meta.contains("Keeps messages for 7 days."), "browse shows {meta:?}");
    bob.wait_text(&format!("{item} .join-btn"), "Join").await?;
    bob.click(&format!("{item} .join-btn")).await?;
    bob.wait_room_open("general").await?;
    ensure!(
        bob.js("return document.getElementById('browse-dialog').open;", vec![]).await? == json!(false),
        "the browse dialog closes after joining"
    );
    // Alice sees the join as a system notice, not as a message.
    alice
        .wait_js(
            "the 'bob joined' notice",
            "return [...document.querySelectorAll('#messages .notice.notice-joined .text')]
                 .some((e) => e.textContent === 'bob joined');",
            vec![],
        )
        .await?;

    // Chat both ways: each message appears once, with author and time, on both sides.
    alice.send_message("Hello Bob, welcome to general!").await?;
    wait_shown(&bob, "Hello Bob, welcome to general!", "Alice Liddell", "alice", false, false).await?;
    wait_shown(&alice, "Hello Bob, welcome to general!", "Alice Liddell", "alice", true, true).await?;
    bob.send_message("Hi Alice, glad to be here.\nTwo lines, even.").await?;
    wait_shown(&alice, "Hi Alice, glad to be here.\nTwo lines, even.", "Bob Marley", "bob", false, false).await?;
    wait_shown(&bob, "Hi Alice, glad to be here.\nTwo lines, even.", "Bob Marley", "bob", true, true).await?;
    for (b, text) in
        [(&alice, "Hello Bob, welcome to general!"), (&bob, "Hi Alice, glad to be here.\nTwo lines, even.")]
    {
        ensure!(b.msg_count(text).await? == 1, "{}: {text:?} shown once", b.name);
    }

    // Each sees the other online in the members panel.
    wait_member_online(&alice, "@bob", true).await?;
    wait_member_online(&bob, "@alice", true).await?;
    alice.wait_text("#member-count", "(2, 2 online)").await?;

    // The typing indicator, both ways; it goes away when the message arrives.
    bob.type_keys("#composer", "Let me think").await?;
    alice.wait_text("#typing", "bob is typing…").await?;
    bob.send_message(" about it.").await?;
    alice.wait_msg("Let me think about it.").await?;
    alice.wait_text("#typing", "").await?;
    alice.type_keys("#composer", "Take your time").await?;
    bob.wait_text("#typing", "alice is typing…").await?;
    alice.send_message("!").await?;
    bob.wait_msg("Take your time!").await?;
    bob.wait_text("#typing", "").await?;

    // A long message shows its first lines and "Show more"; a long text that fits the
    // collapsed height (one wide paragraph) gets no button.
    let long: Vec<String> = (1..=30).map(|i| format!("line {i}")).collect();
    let long = long.join("\n");
    bob.send_message(&long).await?;
    let wide = "word ".repeat(190).trim_end().to_string();
    bob.send_message(&wide).await?;
    alice.wait_msg(&wide).await?;
    wait_long(
        &alice,
        "the long message collapsed with Show more",
        &long,
        "v.collapsed && v.clipped && v.button === 'Show more' && v.expanded === 'false'",
    )
    .await?;
    wait_long(&alice, "the wide paragraph without a button", &wide, "!v.collapsed && v.button === null").await?;
    alice.click("#messages .msg .show-more").await?;
    wait_long(
        &alice,
        "the long message opened",
        &long,
        "!v.collapsed && !v.clipped && v.button === 'Show less' && v.expanded === 'true'",
    )
    .await?;

    // Alice opens a DM with Bob from the people directory (Bob shows as online there).
    alice.fill("#user-search", "bo").await?;
    let bob_item = alice.wait_item("#user-results", ".user-handle", "@bob").await?;
    alice
        .wait_js(
            "bob online in the directory",
            "return document.querySelector(arguments[0]).classList.contains('online');",
            vec![json!(bob_item)],
        )
        .await?;
    alice.click(&format!("{bob_item} button.user-link")).await?;
    alice.wait_room_open("bob").await?;
    alice.wait_text("#room-topic", "Bob Marley · online").await?;
    let alice_dm = alice.wait_item("#dm-list", ".name", "bob").await?;
    alice
        .wait_js(
            "bob's online dot",
            "return document.querySelector(arguments[0]).classList.contains('online');",
            vec![json!(alice_dm)],
        )
        .await?;
    alice.send_message("Psst, a private word?").await?;
    alice.wait_msg_delivered("Psst, a private word?").await?;

    // Bob, still in #general, gets the DM with an unread badge, opens it and answers.
    let bob_dm = bob.wait_item("#dm-list", ".name", "alice").await?;
    bob.wait_js("an unread badge of 1 on the DM", "const u = document.querySelector(arguments[0] + ' .unread'); return !!u && !u.hidden && u.textContent === '1';", vec![json!(bob_dm)]).await?;
    bob.open_conversation("alice").await?;
    wait_shown(&bob, "Psst, a private word?", "Alice Liddell", "alice", false, false).await?;
    bob.wait_js(
        "the badge to clear",
        "return document.querySelector(arguments[0] + ' .unread').hidden;",
        vec![json!(bob_dm)],
    )
    .await?;
    bob.send_message("Sure, what is it?").await?;
    wait_shown(&alice, "Sure, what is it?", "Bob Marley", "bob", false, false).await?;
    ensure!(badge(&alice, &alice_dm).await? == 0, "alice reads the open DM: no badge");

    // Bob goes away (closes his browser): Alice sees him go offline.
    bob.close(d).await?;
    alice
        .wait_js(
            "bob's DM dot to go offline",
            "return !document.querySelector(arguments[0]).classList.contains('online');",
            vec![json!(alice_dm)],
        )
        .await?;
    alice.wait_text("#room-topic", "Bob Marley · offline").await?;
    alice.send_message("Are you there? This will wait for you.").await?;
    alice.wait_msg_delivered("Are you there? This will wait for you.").await?;
    alice.open_conversation("general").await?;
    wait_member_online(&alice, "@bob", false).await?;

    // Bob comes back in a new browser, signs in, and finds the held DM.
    let bob2 = d.browser("bob-again").await?;
    bob2.goto(&home).await?;
    bob2.fill("#login-form [name=login]", "bob").await?;
    bob2.fill("#login-form [name=password]", "not the password").await?;
    bob2.click("#login-form button[type=submit]").await?;
    bob2.wait_text("#login-error", "Wrong email/username or password").await?;
    bob2.sign_in("bob", PASSWORD).await?;
    let dm = bob2.wait_item("#dm-list", ".name", "alice").await?;
    bob2.wait_js(
        "the held DM's unread badge",
        "const u = document.querySelector(arguments[0] + ' .unread'); return !!u && !u.hidden && u.textContent === '1';",
        vec![json!(dm)],
    )
    .await?;
    bob2.open_conversation("alice").await?;
    wait_shown(&bob2, "Are you there? This will wait for you.", "Alice Liddell", "alice", false, false).await?;
    for text in ["Psst, a private word?", "Sure, what is it?", "Are you there? This will wait for you."] {
        ensure!(bob2.msg_count(text).await? == 1, "bob: {text:?} shown once after signing in again");
    }
    bob2.wait_js(
        "the badge to clear",
        "return document.querySelector(arguments[0] + ' .unread').hidden;",
        vec![json!(dm)],
    )
    .await?;
    // And Alice sees him back.
    wait_member_online(&alice, "@bob", true).await?;

    for b in [&alice, &bob2] {
        let errors = b.console_errors().await;
        ensure!(errors.is_empty(), "{}: console errors: {errors:#?}", b.name);
    }
    alice.close(d).await?;
    bob2.close(d).await?;
    Ok(())
}

// ---------------------------------------------------------------- reading

/// An account with a real name, signed in over HTTP.
async fn person(srv: &TestServer, first: &str, last: &str, username: &str) -> Result<Client> {
    let mut c = srv.client();
    let (s, body) = c
        .register_with(json!({
            "first_name": first, "last_name": last, "email": format!("{username}@example.org"),
            "username": username, "password": PASSWORD,
        }))
        .await;
    ensure!(s == 200 || s == 201, "sign-up of {username}: {body}");
    Ok(c)
}

/// The reader's marker in a room, as the server keeps it.
async fn read_seq(c: &Client, room: i64) -> Result<i64> {
    let (s, body) = c.get(&format!("/api/rooms/{room}")).await;
    ensure!(s == 200, "GET /api/rooms/{room}: {body}");
    body["room"]["read_seq"].as_i64().or_else(|| body["read_seq"].as_i64()).context(format!("read_seq in {body}"))
}

/// Polls the server until the marker is `want` (fails after 15 s with the last value).
async fn wait_read_seq(c: &Client, room: i64, want: i64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = read_seq(c, room).await?;
        if now == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the read marker stayed at {now}, expected {want}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks for a while that the marker does not move from `want` (the only way to see
/// that something does not happen).
async fn read_seq_stays(c: &Client, room: i64, want: i64, what: &str) -> Result<()> {
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        let now = read_seq(c, room).await?;
        ensure!(now == want, "{what}: the read marker moved from {want} to {now}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// The newest message whose bottom edge is inside the list's viewport.
const NEWEST_ON_SCREEN: &str = "
  const list = document.getElementById('messages');
  const view = list.getBoundingClientRect();
  let best = 0;
  for (const m of list.querySelectorAll('.msg[data-seq]')) {
    const b = m.getBoundingClientRect().bottom;
    if (b <= view.bottom + 1 && b > view.top) best = Math.max(best, Number(m.dataset.seq));
  }
  return best;";

/// The unread divider, once it is on screen: what follows it and where the list is.
const DIVIDER: &str = "
  const list = document.getElementById('messages');
  const div = list.querySelector('.unread-divider');
  if (!div) return null;
  const view = list.getBoundingClientRect();
  const r = div.getBoundingClientRect();
  if (r.top < view.top - 1 || r.bottom > view.bottom + 1) return null;
  return {
    count: list.querySelectorAll('.unread-divider').length,
    text: div.textContent,
    role: div.getAttribute('role'),
    next_seq: Number(div.nextElementSibling?.dataset.seq || 0),
    at_bottom: list.scrollHeight - list.scrollTop - list.clientHeight < 5,
  };";

/// How the messages of the open room are grouped and labelled.
const GROUPS: &str = "
  return [...document.querySelectorAll('#messages .msg[data-seq]')].map((m) => {
    const a = m.querySelector('.author');
    const av = m.querySelector('.avatar');
    return {
      seq: Number(m.dataset.seq), cont: m.classList.contains('cont'),
      author: a?.textContent ?? null, title: a?.title ?? null,
      author_hidden: !!a && a.classList.contains('visually-hidden'),
      avatar: av?.textContent ?? null, avatar_class: av?.className ?? null,
      avatar_hidden_from_readers: av?.getAttribute('aria-hidden') ?? null,
    };
  });";

pub async fn reading(d: &Driver) -> Result<()> {
    let srv = TestServer::start_with(Backend::Sqlite, |c| c.rate_messages_per_10s = 10_000).await;
    let kim_api = person(&srv, "Kim", "Nguyen", "kim").await?;
    let leo = person(&srv, "Leo", "Tolstoy", "leo").await?;
    let lobby = leo.create_room("lobby", json!({ "topic": "Say hello" })).await;
    let news = leo.create_room("news", json!({ "topic": "Long reads" })).await;
    for room in [lobby, news] {
        let (s, body) = kim_api.post(&format!("/api/rooms/{room}/join"), json!({})).await;
        ensure!(s == 200, "kim joins {room}: {body}");
    }
    let kim = d.browser("kim").await?;
    kim.resize(1280, 800).await?;
    kim.goto(&srv.url("/")).await?;
    kim.sign_in("kim", PASSWORD).await?;
    kim.open_conversation("lobby").await?;
    ensure!(kim.js("return document.hasFocus();", vec![]).await? == json!(true), "the test window has the focus");

    // Leo writes 60 messages in #news while Kim is in #lobby.
    let mut lw = leo.ws().await;
    let mut seqs = vec![];
    for i in 1..=60 {
        seqs.push(lw.say(news, &format!("news item {i}")).await.context("a kept message has a seq")?);
    }
    let (first, last) = (seqs[0], seqs[59]);
    let news_li = kim.wait_item("#room-list", ".name", "news").await?;
    kim.wait_text(&format!("{news_li} .unread"), "60").await?;
    let marker = read_seq(&kim_api, news).await?;
    ensure!(marker < first, "nothing of Leo's is read yet: marker {marker}, first {first}");

    // Opening #news: the divider before the first unread message, scrolled into view.
    kim.open_conversation("news").await?;
    let div = kim.wait_js("the unread divider on screen", DIVIDER, vec![]).await?;
    ensure!(div["count"] == 1 && div["role"] == "separator", "one divider, a separator: {div}");
    ensure!(div["text"] == "New messages", "the divider says so: {div}");
    ensure!(div["next_seq"] == first, "the divider stands before the first unread message ({first}): {div}");
    ensure!(div["at_bottom"] == false, "the list is not scrolled to the end: {div}");

    // The marker moves to the newest message on screen, and no further.
    let seen = kim.wait_js("messages on screen", NEWEST_ON_SCREEN, vec![]).await?.as_i64().unwrap_or(0);
    ensure!(seen >= first && seen < last, "the screen shows some of the unread messages: {seen} of {first}..{last}");
    wait_read_seq(&kim_api, news, seen).await.context("the marker moves to what is on screen")?;
    read_seq_stays(&kim_api, news, seen, "while nothing more is on screen").await?;
    kim.wait_text(&format!("{news_li} .unread"), &(last - seen).to_string()).await?;

    // Grouping: one header for Leo's run (the divider starts it), full name, avatar.
    kim.wait_js(
        "Leo's full name on his messages",
        "return document.querySelector('#messages .msg[data-seq] .author')?.textContent === 'Leo Tolstoy';",
        vec![],
    )
    .await?;
    let rows = kim.js(GROUPS, vec![]).await?;
    let rows = rows.as_array().context("rows")?;
    ensure!(rows.len() == 60, "60 messages shown: {}", rows.len());
    let head = &rows[0];
    ensure!(
        head["cont"] == false
            && head["author"] == "Leo Tolstoy"
            && head["title"] == "@leo"
            && head["author_hidden"] == false,
        "the first message has a header with the full name, the username on hover: {head}"
    );
    ensure!(head["avatar"] == "LT" && head["avatar_hidden_from_readers"] == "true", "initials avatar: {head}");
    let class = head["avatar_class"].as_str().unwrap_or_default().to_string();
    ensure!(class.starts_with("avatar av-"), "a colour class: {head}");
    for r in &rows[1..] {
        ensure!(
            r["cont"] == true && r["avatar"].is_null() && r["author_hidden"] == true && r["author"] == "Leo Tolstoy",
            "later messages continue the group (author kept for screen readers): {r}"
        );
    }
    // The same colour for the same person elsewhere (#lobby below).

    // Scrolling to the end reads the rest.
    kim.js(
        "const l = document.getElementById('messages'); l.scrollTop = l.scrollHeight; l.dispatchEvent(new Event('scroll'));",
        vec![],
    )
    .await?;
    wait_read_seq(&kim_api, news, last).await.context("the marker reaches the end after scrolling there")?;
    kim.wait_js(
        "the badge of #news to clear",
        "return document.querySelector(arguments[0] + ' .unread').hidden;",
        vec![json!(news_li)],
    )
    .await?;

    // A tab in the background reads nothing; coming back reads what is on screen. The
    // page notes how it was when each new message was put on screen, so the check
    // below is not passed by messages that simply arrived late.
    kim.js(
        "window.__arrivals = [];
         new MutationObserver((records) => {
           for (const r of records) for (const n of r.addedNodes)
             if (n.classList?.contains('msg')) window.__arrivals.push({
               text: n.querySelector('.text')?.textContent, visible: document.visibilityState, focus: document.hasFocus(),
             });
         }).observe(document.getElementById('messages'), { childList: true });",
        vec![],
    )
    .await?;
    let home = kim.c.window().await?;
    let other = kim.c.new_window(true).await?;
    kim.c.switch_to_window(other.handle).await?;
    let mut more = vec![];
    for i in 61..=63 {
        more.push(lw.say(news, &format!("news item {i}")).await.context("seq")?);
    }
    read_seq_stays(&kim_api, news, last, "while the tab is in the background").await?;
    kim.c.close_window().await?;
    kim.c.switch_to_window(home).await?;
    kim.wait_msg("news item 63").await?;
    let arrivals = kim.js("return window.__arrivals;", vec![]).await?;
    let arrivals = arrivals.as_array().cloned().unwrap_or_default();
    ensure!(
        arrivals.len() == 3 && arrivals.iter().all(|a| a["visible"] == "hidden" || a["focus"] == false),
        "the three messages reached the page while its tab was in the background: {arrivals:?}"
    );
    wait_read_seq(&kim_api, news, more[2]).await.context("back in the tab, the new messages are read")?;

    // Leo's avatar in #lobby has the same colour.
    lw.say(lobby, "Morning!").await.context("seq")?;
    kim.open_conversation("lobby").await?;
    kim.wait_msg("Morning!").await?;
    let lobby_class = kim
        .wait_js(
            "Leo's avatar in #lobby",
            "return document.querySelector('#messages .msg[data-seq] .avatar')?.className;",
            vec![],
        )
        .await?;
    ensure!(lobby_class == json!(class), "the same colour in every room: {lobby_class} vs {class}");

    // A draft survives switching rooms and reloading the tab.
    kim.type_keys("#composer", "half a thought").await?;
    kim.open_conversation("news").await?;
    kim.wait_js("news has no draft", "return document.getElementById('composer').value === '';", vec![]).await?;
    kim.open_conversation("lobby").await?;
    kim.wait_js("the draft back", "return document.getElementById('composer').value === 'half a thought';", vec![])
        .await?;
    kim.c.refresh().await?;
    kim.wait_live().await?;
    kim.wait_room_open("lobby").await?;
    kim.wait_js(
        "the draft after a reload",
        "return document.getElementById('composer').value === 'half a thought';",
        vec![],
    )
    .await?;
    kim.js("const t = document.getElementById('composer'); t.value = ''; t.dispatchEvent(new Event('input'));", vec![])
        .await?;

    emoji_and_composer(&kim).await?;

    let errors = kim.console_errors().await;
    ensure!(errors.is_empty(), "console errors: {errors:#?}");
    kim.close(d).await?;
    Ok(())
}

/// `:shortcode:` completion, the picker, and the composer-mode hook.
async fn emoji_and_composer(kim: &Browser) -> Result<()> {
    let value = "return document.getElementById('composer').value;";
    // Completion: ":tad" lists :tada:, Enter takes it.
    kim.type_keys("#composer", ":tad").await?;
    kim.wait_js(
        "the :tada: suggestion",
        "const l = document.getElementById('emoji-suggest');
         return !l.hidden && l.querySelector('li.active .emoji-code')?.textContent === ':tada:' &&
                document.getElementById('composer').getAttribute('aria-activedescendant') === 'emoji-opt-0';",
        vec![],
    )
    .await?;
    kim.type_keys("#composer", &char::from(Key::Enter).to_string()).await?;
    kim.wait_js("🎉 in the composer", "return document.getElementById('composer').value === '🎉';", vec![]).await?;
    ensure!(!kim.is_visible("#emoji-suggest").await?, "the list closes after choosing");
    // A whole shortcode with its closing colon is replaced as it is typed.
    kim.type_keys("#composer", " :+1:").await?;
    kim.wait_js("👍 replaced", "return document.getElementById('composer').value === '🎉 👍';", vec![]).await?;
    // Escape dismisses the list without sending.
    kim.type_keys("#composer", " :rock").await?;
    kim.wait_visible("#emoji-suggest").await?;
    kim.type_keys("#composer", &char::from(Key::Escape).to_string()).await?;
    kim.wait_js("the list to close", "return document.getElementById('emoji-suggest').hidden;", vec![]).await?;
    ensure!(kim.js(value, vec![]).await? == json!("🎉 👍 :rock"), "Escape keeps the text");

    // The picker: search, Enter inserts at the cursor, the focus comes back.
    kim.js("const t = document.getElementById('composer'); t.value = 'Ship it '; t.setSelectionRange(8, 8);", vec![])
        .await?;
    kim.click("#emoji-btn").await?;
    kim.wait_js(
        "the picker open, focus in its search",
        "return !document.getElementById('emoji-picker').hidden && document.activeElement?.id === 'emoji-search' &&
                document.getElementById('emoji-btn').getAttribute('aria-expanded') === 'true';",
        vec![],
    )
    .await?;
    let all = kim.js("return document.querySelectorAll('#emoji-grid button[data-emoji]').length;", vec![]).await?;
    ensure!(all.as_u64().unwrap_or(0) > 300, "the whole vendored list is offered: {all}");
    kim.type_keys("#emoji-search", "rocket").await?;
    kim.wait_js(
        "🚀 first among the results",
        "return document.querySelector('#emoji-grid button[data-emoji]')?.dataset.emoji === '🚀';",
        vec![],
    )
    .await?;
    kim.type_keys("#emoji-search", &char::from(Key::Enter).to_string()).await?;
    kim.wait_js("🚀 inserted", "return document.getElementById('composer').value === 'Ship it 🚀';", vec![]).await?;
    ensure!(!kim.is_visible("#emoji-picker").await?, "the picker closes after choosing");
    // Arrow keys move between emoji; Escape closes and gives the focus back.
    kim.click("#emoji-btn").await?;
    kim.wait_js("focus in the search", "return document.activeElement?.id === 'emoji-search';", vec![]).await?;
    kim.type_keys("#emoji-search", &char::from(Key::Down).to_string()).await?;
    kim.type_keys("#emoji-grid button[tabindex=\"0\"]", &char::from(Key::Right).to_string()).await?;
    kim.wait_js(
        "the second emoji focused",
        "return document.activeElement === document.querySelectorAll('#emoji-grid button[data-emoji]')[1];",
        vec![],
    )
    .await?;
    kim.type_keys("#emoji-grid button[tabindex=\"0\"]", &char::from(Key::Escape).to_string()).await?;
    kim.wait_js(
        "the picker closed, focus on its button",
        "return document.getElementById('emoji-picker').hidden && document.activeElement?.id === 'emoji-btn';",
        vec![],
    )
    .await?;
    kim.click("#send-btn").await?;
    kim.wait_msg_delivered("Ship it 🚀").await?;

    // The composer-mode hook (for reply and edit): a bar, Enter submits to the mode.
    kim.js(
        "return import('/js/conversation.js').then((c) => {
           window.__submitted = null;
           c.setComposerMode({ label: 'Editing a message', text: 'fixed text', submit: (t) => { window.__submitted = t; } });
         });",
        vec![],
    )
    .await?;
    kim.wait_text("#composer-mode .composer-mode-label", "Editing a message").await?;
    kim.wait_visible("#composer-mode").await?;
    ensure!(kim.js(value, vec![]).await? == json!("fixed text"), "the mode's text is in the composer");
    kim.type_keys("#composer", &char::from(Key::Enter).to_string()).await?;
    kim.wait_js(
        "the mode to take the text",
        "return window.__submitted === 'fixed text' && document.getElementById('composer-mode').hidden &&
                document.getElementById('composer').value === '';",
        vec![],
    )
    .await?;
    ensure!(kim.msg_count("fixed text").await? == 0, "a mode's submit is not a send");
    kim.js(
        "return import('/js/conversation.js').then((c) => {
           window.__cancelled = false;
           c.setComposerMode({ label: 'Replying', cancel: () => { window.__cancelled = true; } });
         });",
        vec![],
    )
    .await?;
    kim.wait_visible("#composer-mode").await?;
    kim.type_keys("#composer", &char::from(Key::Escape).to_string()).await?;
    kim.wait_js(
        "Escape to cancel the mode",
        "return window.__cancelled && document.getElementById('composer-mode').hidden;",
        vec![],
    )
    .await?;
    Ok(())
}
