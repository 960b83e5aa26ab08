//! Living in rooms: scrolling up pages in older history (no gaps, no duplicates), the
//! "new messages" pill while scrolled up, an ephemeral room made in the dialog, room
//! settings for the owner, leaving a room (after a question), the admin's invite link
//! while registration is closed, signing out, and signing up with the invite link.
//!
//! And what a new user hit (issue 12): a room whose start retention deleted says so
//! instead of "this is the beginning"; a person's new name shows on the others' pages
//! at once; the admin manages a room someone else owns, and removes a member of a
//! public room from its settings.

use anyhow::{Result, ensure};
use serde_json::json;

use crate::{
    browser::{Browser, Driver},
    common::{Backend, TestServer, password_of},
};

/// Messages seeded in #archive: more than two pages of history.
const SEEDED: i64 = 120;

/// The seqs of the text messages on screen, in order.
async fn shown_seqs(b: &Browser) -> Result<Vec<i64>> {
    let v = b
        .js(
            "return [...document.querySelectorAll('#messages .msg[data-seq]')].map((m) => Number(m.dataset.seq));",
            vec![],
        )
        .await?;
    Ok(v.as_array().map(|a| a.iter().filter_map(|x| x.as_i64()).collect()).unwrap_or_default())
}

pub async fn rooms_and_history(d: &Driver) -> Result<()> {
    let srv = TestServer::start_with(Backend::Sqlite, |c| c.rate_messages_per_10s = 10_000).await;
    let hank_api = srv.user("hank").await;
    let ivy = srv.user("ivy").await;
    let archive = ivy.create_room("archive", json!({ "topic": "Old news" })).await;
    let (s, body) = hank_api.post(&format!("/api/rooms/{archive}/join"), json!({})).await;
    ensure!(s == 200, "hank joins: {body}");
    let mut iw = ivy.ws().await;
    for i in 1..=SEEDED {
        iw.say(archive, &format!("archived message {i}")).await;
    }

    let hank = d.browser("hank").await?;
    hank.goto(&srv.url("/")).await?;
    hank.sign_in("hank", &password_of("hank")).await?;
    hank.open_conversation("archive").await?;
    hank.wait_msg("archived message 120").await?;

    // Scrolling to the top pages in older history until the beginning of the room.
    hank.wait_js_for(
        std::time::Duration::from_secs(30),
        "all of the history after scrolling up",
        "const list = document.getElementById('messages');
         list.scrollTop = 0;
         list.dispatchEvent(new Event('scroll'));
         return document.querySelector('#messages .history-status').dataset.state === 'start';",
        vec![],
    )
    .await?;
    let seqs = shown_seqs(&hank).await?;
    ensure!(seqs.windows(2).all(|w| w[0] < w[1]), "history in order, no duplicates: {seqs:?}");
    for i in [1, 50, 51, 100, 120] {
        ensure!(hank.msg_count(&format!("archived message {i}")).await? == 1, "message {i} shown once");
    }
    ensure!(
        hank.js("return document.querySelectorAll('#messages .msg').length;", vec![]).await? == json!(SEEDED),
        "all {SEEDED} messages shown"
    );

    // Scrolled up, a new message shows the pill instead of moving the view.
    hank.js(
        "const l = document.getElementById('messages'); l.scrollTop = 0; l.dispatchEvent(new Event('scroll'));",
        vec![],
    )
    .await?;
    iw.say(archive, "news while you read old news").await;
    hank.wait_msg("news while you read old news").await?;
    hank.wait_visible("#new-messages-pill").await?;
    let top = hank.js("return document.getElementById('messages').scrollTop;", vec![]).await?;
    ensure!(top.as_f64().unwrap_or(1.0) < 300.0, "the view stays where the reader is: scrollTop {top}");
    hank.click("#new-messages-pill").await?;
    hank.wait_js(
        "the list at the bottom and the pill gone",
        "const l = document.getElementById('messages');
         return document.getElementById('new-messages-pill').hidden && l.scrollHeight - l.scrollTop - l.clientHeight < 50;",
        vec![],
    )
    .await?;

    // The owner keeps less: what the server deleted leaves hank's open page at once
    // (it showed all 121 until a reload).
    let (s, body) = ivy
        .patch(
            &format!("/api/rooms/{archive}"),
            json!({ "retention": { "keep_messages": 5, "keep_days": null, "ephemeral": false } }),
        )
        .await;
    ensure!(s == 200, "ivy keeps 5: {body}");
    hank.wait_js(
        "the trimmed history to leave the page",
        "const texts = [...document.querySelectorAll('#messages .msg .text')].map((t) => t.textContent);
         return texts.length > 0 && texts.length <= 6 && !texts.includes('archived message 1')
           && texts.includes('news while you read old news');",
        vec![],
    )
    .await?;

    // An ephemeral room from the dialog: nothing kept, messages still flow live.
    hank.click("#new-room-btn").await?;
    hank.fill("#new-room-form [name=name]", "scratch").await?;
    hank.select("#new-room-form [name=retention]", "ephemeral").await?;
    ensure!(!hank.is_visible("#new-room-form [name=keep_messages]").await?, "no limits for an ephemeral room");
    hank.click("#new-room-form button[type=submit]").await?;
    hank.wait_room_open("scratch").await?;
    hank.wait_js(
        "the ephemeral note",
        "return document.querySelector('#messages .history-status').dataset.state === 'ephemeral';",
        vec![],
    )
    .await?;
    hank.wait_text("#room-retention", "Ephemeral: nothing is kept.").await?;
    let (s, body) = ivy.get("/api/rooms?q=scratch").await;
    let scratch = body["rooms"][0]["id"].as_i64().unwrap_or_default();
    ensure!(s == 200 && scratch > 0, "ivy finds scratch: {body}");
    let (s, body) = ivy.post(&format!("/api/rooms/{scratch}/join"), json!({})).await;
    ensure!(s == 200, "ivy joins scratch: {body}");
    hank.send_message("this will not be kept").await?;
    let m = hank.wait_js(
        "the ephemeral message acknowledged",
        "for (const m of document.querySelectorAll('#messages .msg'))
           if (m.querySelector('.text')?.textContent === arguments[0] && !m.classList.contains('pending')) return true;
         return false;",
        vec![json!("this will not be kept")],
    );
    m.await?;
    iw.say(scratch, "nor will this").await;
    hank.wait_msg("nor will this").await?;
    ensure!(hank.msg_count("this will not be kept").await? == 1, "the own ephemeral message is shown once");

    // Room settings (hank owns scratch): a new topic and a new retention.
    hank.click("#room-settings-btn").await?;
    hank.fill("#room-settings-form [name=topic]", "Scratch pad, now with memory").await?;
    hank.select("#room-settings-form [name=retention]", "messages").await?;
    hank.fill("#room-settings-form [name=keep_messages]", "10").await?;
    hank.click("#room-settings-form button[type=submit]").await?;
    hank.wait_text("#room-settings-ok", "Saved.").await?;
    hank.click("#room-settings-dialog .dialog-actions button[data-close]").await?;
    hank.wait_text("#room-topic", "Scratch pad, now with memory").await?;
    hank.wait_text("#room-retention", "Keeps the last 10 messages.").await?;

    // Leaving #archive: it leaves the sidebar.
    hank.open_conversation("archive").await?;
    hank.click("#leave-btn").await?;
    // Leaving a public room asks first (a thumb can hit the button by mistake).
    hank.wait_visible("#confirm-ok").await?;
    let q = hank.text("#confirm-text").await?;
    ensure!(q.contains("Leave #archive?") && q.contains("join it again"), "the question: {q}");
    hank.click("#confirm-ok").await?;
    hank.wait_js(
        "archive to leave the sidebar",
        "return ![...document.querySelectorAll('#room-list .name')].some((n) => n.textContent === 'archive');",
        vec![],
    )
    .await?;
    hank.wait_text("#toast", "You left #archive.").await?;
    hank.wait_js(
        "another conversation to open",
        "return document.getElementById('room-title').textContent === 'scratch';",
        vec![],
    )
    .await?;

    let errors = hank.console_errors().await;
    ensure!(errors.is_empty(), "console errors: {errors:#?}");

    // Hank, the first account, is the admin: registration by invitation, and a link.
    hank.click("#settings-btn").await?;
    hank.wait_visible("#admin-section").await?;
    // A new email needs the current password: refused without it, saved with it.
    hank.fill("#profile-form [name=email]", "hank.new@example.org").await?;
    hank.click("#profile-form button[type=submit]").await?;
    hank.wait_text("#profile-error", "Enter your current password to change your email.").await?;
    hank.fill("#profile-form [name=current_password]", "not-the-password").await?;
    hank.click("#profile-form button[type=submit]").await?;
    hank.wait_text("#profile-error", "The current password is not right").await?;
    hank.fill("#profile-form [name=current_password]", &password_of("hank")).await?;
    hank.click("#profile-form button[type=submit]").await?;
    hank.wait_text("#profile-ok", "Profile saved.").await?;
    // Closed registration: the admin's invite link is still the way in. Both are in
    // the admin console (issue 15), which the Settings dialog opens on that tab.
    hank.click("#open-admin-btn").await?;
    hank.wait_visible("#registration-form").await?;
    hank.select("#registration-mode", "closed").await?;
    hank.click("#registration-form button[type=submit]").await?;
    hank.wait_text("#admin-ok", "Registration is now closed.").await?;
    hank.click("#create-invite-btn").await?;
    hank.wait_visible("#invite-url").await?;
    let link = hank
        .wait_js("the invite link", "return document.getElementById('invite-url').value;", vec![])
        .await?
        .as_str()
        .unwrap_or_default()
        .to_string();
    ensure!(link.starts_with(&srv.url("/?invite=")), "an invite link to this server: {link}");
    hank.click("#admin-close").await?;

    // Signing out returns to the sign-in screen.
    hank.click("#logout").await?;
    hank.wait_visible("#login-form").await?;
    hank.wait_text("#auth-notice", "You are signed out.").await?;

    // Without the link, signing up is refused with a clear message; with it, it works.
    hank.click("#show-signup").await?;
    hank.wait_visible("#signup-closed").await?;
    hank.wait_visible("#invite-field").await?;
    hank.fill("#signup-form [name=first_name]", "Judy").await?;
    hank.fill("#signup-form [name=last_name]", "Hopps").await?;
    hank.fill("#signup-form [name=email]", "judy@example.org").await?;
    hank.fill("#signup-form [name=username]", "judy").await?;
    hank.fill("#signup-form [name=password]", "carrots and more carrots").await?;
    hank.click("#signup-form button[type=submit]").await?;
    let err =
        hank.wait_js("a sign-up error", "return document.getElementById('signup-error').textContent;", vec![]).await?;
    ensure!(err.as_str().is_some_and(|e| e.to_lowercase().contains("closed")), "the error says it is closed: {err}");
    hank.goto(&link).await?;
    hank.wait_visible("#signup-form").await?;
    let code = hank.js("return document.querySelector('#signup-form [name=invite]').value;", vec![]).await?;
    ensure!(link.ends_with(code.as_str().unwrap_or("-")), "the invite code is filled in from the link: {code}");
    hank.sign_up("Judy", "Hopps", "judy", "carrots and more carrots").await?;
    let url = hank.c.current_url().await?;
    ensure!(url.query().is_none(), "the used invite leaves the address bar: {url}");
    hank.close(d).await?;
    Ok(())
}

pub async fn what_a_newcomer_hit(d: &Driver) -> Result<()> {
    let srv = TestServer::start(Backend::Sqlite).await;
    let root_api = srv.user("root").await; // the first account: the admin
    let ivy = srv.user("ivy").await;
    let max = srv.user("max").await;
    let brief = ivy.create_room("brief", json!({ "retention": { "keep_messages": 5 } })).await;
    let fresh = ivy.create_room("fresh", json!({})).await;
    for (who, room) in [(&root_api, brief), (&root_api, fresh), (&max, brief)] {
        let (s, body) = who.post(&format!("/api/rooms/{room}/join"), json!({})).await;
        ensure!(s == 200, "join: {body}");
    }
    let mut iw = ivy.ws().await;
    for i in 1..=12 {
        iw.say(brief, &format!("brief {i}")).await;
    }
    max.ws().await.say(brief, "max was here").await;

    let root = d.browser("root").await?;
    root.goto(&srv.url("/")).await?;
    root.sign_in("root", &password_of("root")).await?;

    // A room that kept its start says so; one whose start was trimmed says that.
    root.open_conversation("fresh").await?;
    root.wait_text("#messages .history-status", "This is the beginning of #fresh.").await?;
    root.open_conversation("brief").await?;
    root.wait_msg("max was here").await?;
    root.wait_js(
        "the trimmed-history note",
        "const s = document.querySelector('#messages .history-status');
         return s.dataset.state === 'trimmed' && s.textContent.trim() === 'Older messages of #brief are no longer kept.';",
        vec![],
    )
    .await?;
    ensure!(root.msg_count("brief 1").await? == 0 && root.msg_count("brief 9").await? == 1, "only the last 5 are kept");

    // Max's new name reaches root's page live: the members panel and his message.
    root.wait_item("#members", ".member-name", "max-first Tester").await?;
    let (s, body) = max.patch("/api/me", json!({ "first_name": "Maximilian", "last_name": "Power" })).await;
    ensure!(s == 200, "rename: {body}");
    root.wait_item("#members", ".member-name", "Maximilian Power").await?;
    root.wait_js(
        "max's message under his new name",
        "for (const m of document.querySelectorAll('#messages .msg'))
           if (m.querySelector('.text')?.textContent === 'max was here')
             return m.querySelector('.author')?.textContent === 'Maximilian Power';
         return false;",
        vec![],
    )
    .await?;

    // The admin has the settings of ivy's room, and removes max from it (public).
    root.click("#room-settings-btn").await?;
    let max_id = max.id().await;
    let remove = format!("#room-members-manage li[data-user-id=\"{max_id}\"] .remove-member");
    root.click(&remove).await?;
    root.wait_js(
        "max to leave the managed list",
        "return !document.querySelector(`#room-members-manage li[data-user-id=\"${arguments[0]}\"]`);",
        vec![json!(max_id)],
    )
    .await?;
    root.click("#room-settings-form button[type=submit]").await?;
    root.wait_text("#room-settings-ok", "Saved.").await?;
    root.click("#room-settings-dialog .dialog-actions button[data-close]").await?;
    root.wait_js(
        "max to leave the members panel",
        "return ![...document.querySelectorAll('#members .member-name')].some((n) => n.textContent === 'Maximilian Power');",
        vec![],
    )
    .await?;
    let (s, members) = ivy.get(&format!("/api/rooms/{brief}/members")).await;
    ensure!(s == 200 && !members.to_string().contains("\"max\""), "max is out of brief: {members}");

    let errors = root.console_errors().await;
    ensure!(errors.is_empty(), "console errors: {errors:#?}");
    root.close(d).await?;
    Ok(())
}
