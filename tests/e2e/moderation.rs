//! Moderation and blocking in the web client (issue 15), three people at three
//! browsers: the owner makes bob a moderator from bob's menu in the member list (bob
//! sees the notice live and gains the moderators' menu), bob mutes carol (carol's
//! composer turns into "you are muted until …", the notice shows everywhere) and lifts
//! it, the owner makes the room read-only in its settings (carol cannot send, bob can),
//! the owner bans carol (the room leaves carol's sidebar with a notice, and her room
//! browser shows it as Banned instead of offering Join; the settings'
//! banned list shows her and unbans her; back in, the moderator removes her), the
//! notices come back from history after a reload (and a former member's full name,
//! also after a sign-out and a sign-in as someone else in the same tab), carol blocks
//! dave (his room messages collapse for her and expand on a click; their DM says she
//! blocked him, and Unblock there reopens it), and the admin archives a room (carol's
//! open page hears it live: the composer gives way to a notice in plain words).

use anyhow::{Result, ensure};
use serde_json::json;

use crate::{
    browser::{Browser, Driver},
    common::{Backend, TestServer, password_of},
};

/// Opens `user`'s menu in the member list and picks `action` (its data-action).
async fn member_action(b: &Browser, user: i64, action: &str) -> Result<()> {
    let li = format!("#members > li[data-user-id=\"{user}\"]");
    b.click(&format!("{li} .member-menu-btn")).await?;
    b.click(&format!("{li} .member-menu [data-action=\"{action}\"]")).await
}

/// The actions listed in `user`'s menu (the menu is closed again after).
async fn menu_actions(b: &Browser, user: i64) -> Result<Vec<String>> {
    let li = format!("#members > li[data-user-id=\"{user}\"]");
    b.click(&format!("{li} .member-menu-btn")).await?;
    b.wait_visible(&format!("{li} .member-menu")).await?;
    let v = b
        .js(
            "const li = document.querySelector(arguments[0]);
             const out = [...li.querySelectorAll('.member-menu [role=menuitem]')].map((x) => x.dataset.action);
             li.querySelector('.member-menu-btn').click();
             return out;",
            vec![json!(li)],
        )
        .await?;
    Ok(v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default())
}

/// Waits until carol's "carol says hi" shows her full name as its author.
async fn wait_carols_name(b: &Browser, when: &str) -> Result<()> {
    b.wait_js(
        &format!("carol's name on her message {when}"),
        "for (const m of document.querySelectorAll('#messages .msg'))
           if (m.querySelector('.text')?.textContent === 'carol says hi')
             return m.querySelector('.author')?.textContent === 'carol-first Tester';
         return false;",
        vec![],
    )
    .await
    .map(|_| ())
}

/// Waits for a moderation notice of `action` reading exactly `text`.
async fn wait_notice(b: &Browser, action: &str, text: &str) -> Result<()> {
    b.wait_js(
        &format!("the {action} notice {text:?}"),
        "return [...document.querySelectorAll(`#messages .notice.notice-moderation[data-action=\"${arguments[0]}\"] .text`)]
           .some((t) => t.textContent === arguments[1]);",
        vec![json!(action), json!(text)],
    )
    .await
    .map(|_| ())
}

/// Waits until the composer is replaced by the notice for `reason` and returns its text.
async fn wait_closed(b: &Browser, reason: &str) -> Result<String> {
    b.wait_js(
        &format!("the composer closed ({reason})"),
        "const c = document.getElementById('composer-closed');
         return !c.hidden && c.dataset.reason === arguments[0] && document.getElementById('composer-form').hidden;",
        vec![json!(reason)],
    )
    .await?;
    b.text("#composer-closed-text").await
}

async fn wait_open_composer(b: &Browser) -> Result<()> {
    b.wait_js(
        "the composer open",
        "return document.getElementById('composer-closed').hidden && !document.getElementById('composer-form').hidden
           && !document.getElementById('composer').disabled;",
        vec![],
    )
    .await
    .map(|_| ())
}

pub async fn moderation_story(d: &Driver) -> Result<()> {
    let srv = TestServer::start(Backend::Sqlite).await;
    // The first account is the site admin; the owner here is an ordinary user.
    let root = srv.user("root").await;
    let alice_api = srv.user("alice").await;
    let bob_api = srv.user("bob").await;
    let carol_api = srv.user("carol").await;
    let dave = srv.user("dave").await;
    let (bob_id, carol_id, dave_id) = (bob_api.id().await, carol_api.id().await, dave.id().await);
    let hall = alice_api.create_room("townhall", json!({ "topic": "Announcements" })).await;
    for c in [&bob_api, &carol_api, &dave] {
        let (s, body) = c.post(&format!("/api/rooms/{hall}/join"), json!({})).await;
        ensure!(s == 200, "joins townhall: {body}");
    }
    let lounge = dave.create_room("lounge", json!({})).await;
    let (s, body) = carol_api.post(&format!("/api/rooms/{lounge}/join"), json!({})).await;
    ensure!(s == 200, "carol joins lounge: {body}");
    let mut dw = dave.ws().await;
    dw.say(lounge, "dave was here before").await;
    let (s, body) = dave.post("/api/dms", json!({ "user_id": carol_id })).await;
    ensure!(s == 200, "dave opens a DM with carol: {body}");
    let dm = body["room"]["id"].as_i64().unwrap_or_default();
    dw.say(dm, "hi carol").await;

    let alice = d.browser("alice").await?;
    let bob = d.browser("bob").await?;
    let carol = d.browser("carol").await?;
    for (b, name) in [(&alice, "alice"), (&bob, "bob"), (&carol, "carol")] {
        b.goto(&srv.url("/")).await?;
        b.sign_in(name, &password_of(name)).await?;
        b.open_conversation("townhall").await?;
        b.wait_visible(&format!("#members > li[data-user-id=\"{carol_id}\"]")).await?;
    }
    // Before: bob is a member; his menu on carol offers only Block.
    ensure!(menu_actions(&bob, carol_id).await? == ["block"], "a member's menu on another member: only Block");
    ensure!(!bob.is_visible("#room-settings-btn").await?, "no room settings for a member");

    // The owner makes bob a moderator: bob sees the notice live and gains the menu.
    member_action(&alice, bob_id, "make-moderator").await?;
    for b in [&alice, &bob, &carol] {
        wait_notice(b, "role", "alice made bob a moderator").await?;
    }
    bob.wait_js(
        "bob's own badge to read moderator",
        "return document.querySelector(`#members > li[data-user-id=\"${arguments[0]}\"] .member-tags`).textContent.includes('moderator');",
        vec![json!(bob_id)],
    )
    .await?;
    bob.wait_visible("#room-settings-btn").await?;
    let actions = menu_actions(&bob, carol_id).await?;
    for want in ["mute-15", "mute-60", "mute-1440", "mute-custom", "remove", "ban", "block"] {
        ensure!(actions.iter().any(|a| a == want), "the moderator's menu on carol has {want}: {actions:?}");
    }
    ensure!(!actions.iter().any(|a| a.starts_with("make-")), "only the owner changes roles: {actions:?}");
    let on_owner = menu_actions(&bob, alice_api.id().await).await?;
    ensure!(on_owner == ["block"], "a moderator cannot act on the owner: {on_owner:?}");

    // Bob mutes carol for an hour: her composer says so, the notice shows.
    member_action(&bob, carol_id, "mute-60").await?;
    for b in [&alice, &bob, &carol] {
        wait_notice(b, "mute", "carol was muted for 1 hour by bob").await?;
    }
    let muted = wait_closed(&carol, "muted").await?;
    ensure!(
        muted.starts_with("You are muted in this room until ") && muted.ends_with("You can still read."),
        "carol's composer notice: {muted:?}"
    );
    alice
        .wait_js(
            "carol's muted tag",
            "return document.querySelector(`#members > li[data-user-id=\"${arguments[0]}\"] .member-tags`).textContent.includes('muted');",
            vec![json!(carol_id)],
        )
        .await?;
    // The server refuses her too (the client is not the only guard).
    let mut cw = carol_api.ws().await;
    let refused =
        cw.request(json!({ "type": "send", "room": hall, "client_id": "c-muted", "text": "let me talk" })).await;
    ensure!(format!("{refused:?}").contains("muted"), "a muted send is refused: {refused:?}");
    member_action(&bob, carol_id, "unmute").await?;
    wait_notice(&carol, "unmute", "carol was unmuted by bob").await?;
    wait_open_composer(&carol).await?;
    ensure!(cw.say(hall, "carol says hi").await.is_some(), "carol may talk again");
    alice.wait_msg("carol says hi").await?;

    // The owner makes the room read-only: carol cannot send, bob (moderator) can.
    alice.click("#room-settings-btn").await?;
    alice.wait_visible("#room-settings-form [name=read_only]").await?;
    alice.click("#room-settings-form [name=read_only]").await?;
    alice.click("#room-settings-form button[type=submit]").await?;
    alice.wait_text("#room-settings-ok", "Saved.").await?;
    alice.click("#room-settings-dialog .dialog-actions button[data-close]").await?;
    for b in [&alice, &bob, &carol] {
        wait_notice(b, "read_only", "alice made the room read-only").await?;
    }
    let ro = wait_closed(&carol, "read_only").await?;
    ensure!(ro.contains("read-only"), "carol's composer notice: {ro:?}");
    wait_open_composer(&bob).await?;
    bob.send_message("Meeting at noon").await?;
    carol.wait_msg("Meeting at noon").await?;
    let refused = cw.request(json!({ "type": "send", "room": hall, "client_id": "c-ro", "text": "me too" })).await;
    ensure!(format!("{refused:?}").contains("read_only"), "a member's send in a read-only room: {refused:?}");

    // The owner bans carol: the room leaves her sidebar, with a notice.
    member_action(&alice, carol_id, "ban").await?;
    alice.click("#confirm-ok").await?;
    wait_notice(&alice, "ban", "carol was banned by alice").await?;
    carol
        .wait_js(
            "townhall gone from carol's sidebar",
            "return !document.querySelector(`#room-list > li[data-room-id=\"${arguments[0]}\"]`);",
            vec![json!(hall)],
        )
        .await?;
    carol.wait_text("#toast", "You were banned from #townhall by alice.").await?;
    // Her message keeps her full name on alice's page, though she left the member list.
    wait_carols_name(&alice, "after the ban").await?;
    let (s, body) = carol_api.post(&format!("/api/rooms/{hall}/join"), json!({})).await;
    ensure!(s == 403 && body["error"]["code"] == "banned", "a banned person cannot rejoin: {s} {body}");
    // Browsing rooms, carol is offered no Join for it.
    carol.click("#browse-btn").await?;
    let item = format!("#browse-results > li[data-room-id=\"{hall}\"] .join-btn");
    carol.wait_text(&item, "Banned").await?;
    carol
        .wait_js(
            "Banned is not a button to press",
            "return document.querySelector(arguments[0]).disabled;",
            vec![json!(item)],
        )
        .await?;
    carol.click("#browse-dialog .dialog-actions button[data-close]").await?;
    // The banned list in the room settings, and Unban.
    alice.click("#room-settings-btn").await?;
    alice.wait_visible(&format!("#room-bans > li[data-user-id=\"{carol_id}\"] .unban-btn")).await?;
    alice.click(&format!("#room-bans > li[data-user-id=\"{carol_id}\"] .unban-btn")).await?;
    alice.wait_visible("#room-bans-empty").await?;
    alice.click("#room-settings-dialog .dialog-actions button[data-close]").await?;
    wait_notice(&alice, "unban", "carol was unbanned by alice").await?;
    // Back in, carol is removed by the moderator: the room leaves her sidebar again.
    let (s, body) = carol_api.post(&format!("/api/rooms/{hall}/join"), json!({})).await;
    ensure!(s == 200, "carol rejoins after the unban: {body}");
    carol.wait_visible(&format!("#room-list > li[data-room-id=\"{hall}\"]")).await?;
    member_action(&bob, carol_id, "remove").await?;
    bob.click("#confirm-ok").await?;
    wait_notice(&bob, "kick", "carol was removed from the room by bob").await?;
    carol
        .wait_js(
            "townhall gone from carol's sidebar again",
            "return !document.querySelector(`#room-list > li[data-room-id=\"${arguments[0]}\"]`);",
            vec![json!(hall)],
        )
        .await?;
    carol.wait_text("#toast", "You were removed from #townhall by bob.").await?;

    // The notices come back from history after a reload.
    bob.goto(&srv.url("/")).await?;
    bob.open_conversation("townhall").await?;
    for (action, text) in [
        ("role", "alice made bob a moderator"),
        ("mute", "carol was muted for 1 hour by bob"),
        ("read_only", "alice made the room read-only"),
        ("ban", "carol was banned by alice"),
    ] {
        wait_notice(&bob, action, text).await?;
    }
    // Carol is no member any more and this page never saw her in a member list: her
    // message still shows her full name (the page asks the directory).
    wait_carols_name(&bob, "after a reload").await?;
    // Bob signs out and alice signs in in the same tab (alice: no DM with carol, whose
    // peer entry would name her): what the page learnt from the directory went with
    // bob's session, and it asks again for alice.
    bob.click("#logout").await?;
    bob.wait_visible("#login-form").await?;
    bob.sign_in("alice", &password_of("alice")).await?;
    bob.open_conversation("townhall").await?;
    wait_carols_name(&bob, "for alice, signed in after bob in the same tab").await?;

    // Carol blocks dave: his room messages collapse for her and expand on a click.
    carol.open_conversation("lounge").await?;
    carol.wait_msg("dave was here before").await?;
    member_action(&carol, dave_id, "block").await?;
    carol.click("#confirm-ok").await?;
    carol
        .wait_js(
            "dave's blocked tag",
            "return document.querySelector(`#members > li[data-user-id=\"${arguments[0]}\"] .member-tags`).textContent.includes('blocked');",
            vec![json!(dave_id)],
        )
        .await?;
    dw.say(lounge, "can you hear me").await;
    // How many of dave's messages show only the collapsed line.
    let collapsed = "const n = [...document.querySelectorAll('#messages article.msg.blocked-collapsed')].filter((m) =>
         m.querySelector('.blocked-line')?.checkVisibility() && !m.querySelector('.text')?.checkVisibility()).length;";
    carol.wait_js("both of dave's messages collapsed", &format!("{collapsed} return n >= 2;"), vec![]).await?;
    let line = carol.text("#messages article.msg.blocked-collapsed .blocked-line").await?;
    ensure!(line == "Message from a blocked person — show", "the collapsed line: {line:?}");
    carol.click("#messages article.msg.blocked-collapsed:last-of-type .blocked-show").await?;
    carol
        .wait_js(
            "the newest one expanded",
            "const t = [...document.querySelectorAll('#messages article.msg .text')].find((x) => x.textContent === 'can you hear me');
             return !!t && t.checkVisibility() && !t.closest('.msg').classList.contains('blocked-collapsed');",
            vec![],
        )
        .await?;
    ensure!(carol.js(&format!("{collapsed} return n;"), vec![]).await? == json!(1), "the older one stays collapsed");
    // Their DM says she blocked him; Unblock there opens it again.
    carol.open_conversation("dave").await?;
    let dm = wait_closed(&carol, "blocked").await?;
    ensure!(dm.starts_with("You blocked @dave."), "the DM's notice: {dm:?}");
    carol.wait_text("#block-btn .btn-label", "Unblock").await?;
    let (s, body) = dave.post("/api/dms", json!({ "user_id": carol_id })).await;
    ensure!(s == 403 && body["error"]["code"] == "blocked", "dave cannot open the DM: {s} {body}");
    carol.click("#composer-closed-action").await?;
    wait_open_composer(&carol).await?;
    carol.wait_text("#block-btn .btn-label", "Block").await?;

    // The admin archives the lounge while carol has it open: `room_updated` tells her
    // page at once, and the composer gives way to a notice.
    carol.open_conversation("lounge").await?;
    wait_open_composer(&carol).await?;
    let (s, body) = root.post(&format!("/api/admin/rooms/{lounge}/archive"), json!({})).await;
    ensure!(s == 204, "root archives the lounge: {s} {body}");
    let archived = wait_closed(&carol, "archived").await?;
    ensure!(archived.starts_with("This room is archived"), "the archived notice: {archived:?}");

    for b in [&alice, &bob, &carol] {
        let errors = b.console_errors().await;
        ensure!(errors.is_empty(), "console errors: {errors:?}");
    }
    Ok(())
}
