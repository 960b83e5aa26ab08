//! Two people in two browsers: sign up through the form, create a room with a
//! retention choice, join it through "browse", chat both ways, see each other online
//! and typing, exchange direct messages from the people directory; then one closes
//! their browser, receives a DM while away, and finds it (unread badge, then the
//! message) after signing in again in a new browser.

use anyhow::{Result, ensure};
use serde_json::{Value, json};

use crate::{
    browser::{Browser, Driver},
    common::{Backend, TestServer},
};

const PASSWORD: &str = "correct horse battery";

/// `HH:MM`, as the message list shows the local time.
fn is_hh_mm(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 5 && b[2] == b':' && [0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit())
}

/// A message row shows who wrote it and when (time on the row, full date on hover).
fn check_shown(m: &Value, author: &str, own: bool) -> Result<()> {
    ensure!(m["author"] == json!(author), "author should be {author}: {m}");
    ensure!(m["own"] == json!(own), "own should be {own}: {m}");
    ensure!(is_hh_mm(m["time"].as_str().unwrap_or("")), "time should be HH:MM: {m}");
    let year = m["year"].to_string();
    ensure!(m["title"].as_str().is_some_and(|t| t.contains(&year)), "the full date should be in the title: {m}");
    Ok(())
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
    let srv = TestServer::start(Backend::Sqlite).await;
    let home = srv.url("/");
    let alice = d.browser("alice").await?;
    let bob = d.browser("bob").await?;
    alice.goto(&home).await?;
    bob.goto(&home).await?;
    alice.sign_up("Alice", "Liddell", "alice", PASSWORD).await?;
    // A taken username is refused inline, on the field it is about.
    bob.click("#show-signup").await?;
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
    check_shown(&bob.wait_msg("Hello Bob, welcome to general!").await?, "alice", false)?;
    check_shown(&alice.wait_msg_delivered("Hello Bob, welcome to general!").await?, "alice", true)?;
    bob.send_message("Hi Alice, glad to be here.\nTwo lines, even.").await?;
    check_shown(&alice.wait_msg("Hi Alice, glad to be here.\nTwo lines, even.").await?, "bob", false)?;
    check_shown(&bob.wait_msg_delivered("Hi Alice, glad to be here.\nTwo lines, even.").await?, "bob", true)?;
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
    check_shown(&bob.wait_msg("Psst, a private word?").await?, "alice", false)?;
    bob.wait_js(
        "the badge to clear",
        "return document.querySelector(arguments[0] + ' .unread').hidden;",
        vec![json!(bob_dm)],
    )
    .await?;
    bob.send_message("Sure, what is it?").await?;
    check_shown(&alice.wait_msg("Sure, what is it?").await?, "bob", false)?;
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
    check_shown(&bob2.wait_msg("Are you there? This will wait for you.").await?, "alice", false)?;
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
