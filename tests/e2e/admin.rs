//! The admin console and the password reset page (issue 15, PROTOCOL.md §2.5/§2.10),
//! in real Chromium against the real server (SQLite):
//!
//! - only an admin sees the console's entry point; the admin opens the console, finds
//!   a user by searching, and promotes them after a confirmation: the promoted user's
//!   page shows the entry point after a reload;
//! - the admin issues a password reset link (shown with a Copy button); a second
//!   browser opens it, sets a new password (a mismatch is refused in plain words), lands
//!   on the sign-in screen with a confirmation and signs in with the new password; the
//!   old password and the old session no longer work, and the link works only once
//!   (opened again, it says so before any form shows);
//! - the admin archives a room after a confirmation: a member's page then says the
//!   room is archived in place of the composer (and still does after a reload);
//! - deleting a room asks for its name to be typed first;
//! - the audit log lists those actions (and bob's use of the link), newest first,
//!   with who did them;
//! - "sign out everywhere" (after a confirmation) sends the person's open page to the
//!   sign-in screen; disable (after a confirmation) and enable work, with no Disable
//!   button on one's own row; the tabs follow the arrow keys; unarchiving reopens a room;
//! - the registration mode, invite links (moved from the Settings dialog), the default
//!   room (public rooms offered) and the server facts are in the console.

use anyhow::{Result, ensure};
use fantoccini::key::Key;
use serde_json::{Value, json};

use crate::{
    browser::{Browser, Driver},
    common::{Backend, TestServer, password_of},
};

/// The rows of a console table: per row its data attributes and cell texts.
const ROWS: &str = "
  return [...document.querySelectorAll(arguments[0] + ' > tr')].map((tr) => ({
    data: { ...tr.dataset },
    cells: [...tr.cells].map((c) => c.textContent.trim()),
  }));";

async fn rows(b: &Browser, body: &str) -> Result<Vec<Value>> {
    Ok(b.js(ROWS, vec![json!(body)]).await?.as_array().cloned().unwrap_or_default())
}

/// Waits until the users table shows exactly `usernames` (in that order).
async fn wait_users(b: &Browser, usernames: &[&str]) -> Result<()> {
    b.wait_js(
        &format!("the users table to list {usernames:?}"),
        "const got = [...document.querySelectorAll('#admin-users-body > tr')].map((tr) => tr.dataset.username);
         return JSON.stringify(got) === JSON.stringify(arguments[0]) &&
                document.getElementById('admin-panel-users').getAttribute('aria-busy') !== 'true';",
        vec![json!(usernames)],
    )
    .await
    .map(|_| ())
}

/// Clicks a confirmation dialog's OK button once it is open.
async fn confirm(b: &Browser, expect: &str) -> Result<()> {
    b.wait_visible("#confirm-ok").await?;
    let text = b.text("#confirm-text").await?;
    ensure!(text.contains(expect), "the confirmation should say {expect:?}: {text:?}");
    b.click("#confirm-ok").await
}

pub async fn admin_console(d: &Driver) -> Result<()> {
    let srv = TestServer::start(Backend::Sqlite).await;
    // The first account is the admin.
    let ada_api = srv.user("ada").await;
    let bob_api = srv.user("bob").await;
    let cleo_api = srv.user("cleo").await;
    let _clement = srv.user("clement").await;
    let town = bob_api.create_room("town", json!({ "topic": "Everything about town" })).await;
    let (s, body) = cleo_api.post(&format!("/api/rooms/{town}/join"), json!({})).await;
    ensure!(s == 200, "cleo joins town: {body}");
    let scratch = bob_api.create_room("scratch", json!({})).await;
    let lobby = bob_api.create_room("lobby", json!({})).await;

    let ada = d.browser("ada").await?;
    ada.goto(&srv.url("/")).await?;
    ada.sign_in("ada", &password_of("ada")).await?;
    let cleo = d.browser("cleo").await?;
    cleo.goto(&srv.url("/")).await?;
    cleo.sign_in("cleo", &password_of("cleo")).await?;
    ensure!(!cleo.is_visible("#admin-btn").await?, "a member sees no admin console button");

    // The console, on its Users tab: every account; a search narrows it down.
    ada.wait_visible("#admin-btn").await?;
    ada.click("#admin-btn").await?;
    ada.wait_visible("#admin-console").await?;
    ada.wait_visible("#admin-users-body > tr").await?;
    ada.select("#admin-user-sort", "name").await?;
    wait_users(&ada, &["ada", "bob", "clement", "cleo"]).await?;
    ada.fill("#admin-user-q", "cleo").await?;
    wait_users(&ada, &["cleo"]).await?;
    let cleo_row = &rows(&ada, "#admin-users-body").await?[0];
    let cells: Vec<&str> = cleo_row["cells"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    ensure!(cells.contains(&"Member") && cells.contains(&"Active"), "cleo's row: {cells:?}");
    ensure!(cells.iter().any(|c| c.contains("cleo@example.org")), "cleo's row shows her email: {cells:?}");

    // Promote, after a confirmation.
    ada.click("#admin-users-body > tr[data-username=cleo] button[data-act=promote]").await?;
    confirm(&ada, "Make @cleo an admin?").await?;
    ada.wait_text("#admin-users-body > tr[data-username=cleo] .admin-role", "Admin").await?;
    ada.wait_visible("#admin-users-body > tr[data-username=cleo] button[data-act=demote]").await?;
    // Cleo's page learns it on the next load.
    cleo.goto(&srv.url("/")).await?;
    cleo.wait_live().await?;
    cleo.wait_visible("#admin-btn").await?;

    // A password reset link for bob, shown with a Copy button.
    ada.fill("#admin-user-q", "bob").await?;
    wait_users(&ada, &["bob"]).await?;
    ada.click("#admin-users-body > tr[data-username=bob] button[data-act=reset]").await?;
    ada.wait_visible("#admin-reset-url").await?;
    ada.wait_visible("#admin-copy-reset").await?;
    let link = ada
        .wait_js("the reset link", "return document.getElementById('admin-reset-url').value || null;", vec![])
        .await?
        .as_str()
        .unwrap_or_default()
        .to_string();
    ensure!(link.starts_with(&srv.url("/?reset=")), "a reset link to this server: {link}");
    let label = ada.text("#admin-reset-label").await?;
    ensure!(label.contains("@bob"), "the link says whose it is: {label:?}");

    // A second browser uses it: a mismatch is refused, then the password is set.
    let bob = d.browser("bob").await?;
    bob.goto(&link).await?;
    bob.wait_visible("#reset-form").await?;
    ensure!(!bob.is_visible("#login-form").await?, "the reset form, not the sign-in form");
    let new_password = "a brand new secret";
    bob.fill("#reset-form [name=password]", new_password).await?;
    bob.fill("#reset-form [name=confirm]", "something else").await?;
    bob.click("#reset-form button[type=submit]").await?;
    bob.wait_text("#reset-error", "The two passwords are not the same.").await?;
    bob.fill("#reset-form [name=confirm]", new_password).await?;
    bob.click("#reset-form button[type=submit]").await?;
    bob.wait_visible("#login-form").await?;
    bob.wait_text("#auth-notice", "Your new password is set. Sign in with it.").await?;
    let search = bob.js("return location.search;", vec![]).await?;
    ensure!(search.as_str() == Some(""), "the code left the address bar: {search}");
    bob.sign_in("bob", new_password).await?;
    // The old session ended with the reset; the old password no longer works.
    let (s, _) = bob_api.get("/api/me").await;
    ensure!(s == 401, "bob's old session ended with the reset (got {s})");
    let mut stranger = srv.client();
    let (s, _) = stranger.login("bob", &password_of("bob")).await;
    ensure!(s == 401, "the old password is refused (got {s})");
    // The link worked once: opened again, it says so at once, with no form to fill.
    let again = d.browser("bob-again").await?;
    again.goto(&link).await?;
    again
        .wait_js(
            "the spent link to be refused in plain words",
            "return document.getElementById('reset-status').textContent.includes('already used');",
            vec![],
        )
        .await?;
    ensure!(!again.is_visible("#reset-form").await?, "no password form for a spent link");

    // Rooms: archive town (a member's send is then refused), with member counts.
    cleo.open_conversation("town").await?;
    ada.click(".admin-tab[data-tab=rooms]").await?;
    ada.wait_visible("#admin-rooms-body > tr[data-name=town]").await?;
    let town_row =
        rows(&ada, "#admin-rooms-body").await?.into_iter().find(|r| r["data"]["name"] == "town").unwrap_or_default();
    let cells: Vec<&str> = town_row["cells"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    ensure!(cells.starts_with(&["#town", "Public", "@bob", "2", "Active"]), "town's row: {cells:?}");
    ada.click("#admin-rooms-body > tr[data-name=town] button[data-act=archive]").await?;
    confirm(&ada, "Archive “town”?").await?;
    ada.wait_text("#admin-rooms-body > tr[data-name=town] .admin-room-state", "Archived").await?;
    ada.wait_visible("#admin-rooms-body > tr[data-name=town] button[data-act=unarchive]").await?;
    // The member's open page: archiving may reach it live; if not, her refused send
    // tells it (moderation.js shows the notice in place of the composer).
    if cleo.is_visible("#composer-form").await? {
        cleo.fill("#composer", "is anyone here?").await?;
        cleo.click("#send-btn").await?;
        cleo.wait_visible("#messages .msg.failed").await?;
    }
    let archived = "This room is archived: you can read it, but nobody can send messages.";
    cleo.wait_visible("#composer-closed[data-reason=archived]").await?;
    cleo.wait_text("#composer-closed-text", archived).await?;
    // And after a reload, from the room's state.
    cleo.goto(&srv.url(&format!("/#room={town}"))).await?;
    cleo.wait_room_open("town").await?;
    cleo.wait_visible("#composer-closed[data-reason=archived]").await?;
    cleo.wait_text("#composer-closed-text", archived).await?;
    ensure!(!cleo.is_visible("#composer-form").await?, "no composer in an archived room");

    // Deleting asks for the room's name: the button stays off until it is typed.
    ada.click("#admin-rooms-body > tr[data-name=scratch] button[data-act=delete]").await?;
    ada.wait_visible("#admin-delete-name").await?;
    ada.fill("#admin-delete-name", "scratc").await?;
    ensure!(
        ada.js("return document.getElementById('admin-delete-ok').disabled;", vec![]).await? == json!(true),
        "delete stays off until the name is typed"
    );
    ada.fill("#admin-delete-name", "scratch").await?;
    ada.click("#admin-delete-ok").await?;
    ada.wait_js(
        "scratch to leave the rooms table",
        "return !document.querySelector('#admin-rooms-body > tr[data-name=scratch]') &&
                !!document.querySelector('#admin-rooms-body > tr[data-name=town]');",
        vec![],
    )
    .await?;
    let (s, body) = ada_api.get("/api/admin/rooms?q=scratch").await;
    ensure!(s == 200 && body["total"] == 0, "the deleted room is gone: {body}");
    let (s, _) = ada_api.get(&format!("/api/rooms/{scratch}")).await;
    ensure!(s == 404, "the deleted room is gone (got {s})");

    // The audit log: newest first, with who did what to whom.
    ada.click(".admin-tab[data-tab=audit]").await?;
    ada.wait_visible("#admin-audit-body > tr").await?;
    let entries = ada
        .js(
            "return [...document.querySelectorAll('#admin-audit-body > tr')].map((tr) => [
               tr.dataset.action, tr.querySelector('.audit-actor').textContent, tr.querySelector('.audit-target').textContent]);",
            vec![],
        )
        .await?;
    let want = json!([
        ["room.delete", "@ada", "scratch"],
        ["room.archive", "@ada", "town"],
        ["user.password_reset", "@bob", "bob"],
        ["user.reset_link", "@ada", "bob"],
        ["user.promote", "@ada", "cleo"],
    ]);
    let got: Vec<Value> = entries.as_array().cloned().unwrap_or_default();
    ensure!(got.len() >= 5 && Value::from(got[..5].to_vec()) == want, "the audit log, newest first: {entries}");
    let first = ada.text("#admin-audit-body > tr:first-child .audit-action").await?;
    ensure!(first == "room deleted", "actions in words: {first:?}");

    // Paging by `before`: "Older entries" appends the next page until none is left.
    for _ in 0..30 {
        let (s, body) = ada_api.post("/api/admin/invites", json!({})).await;
        ensure!(s == 201, "an invite: {body}");
    }
    let (_, all) = ada_api.get("/api/admin/audit?limit=200").await;
    let all_ids: Vec<i64> = all["entries"].as_array().into_iter().flatten().filter_map(|e| e["id"].as_i64()).collect();
    ensure!(all_ids.len() > 25 && all_ids.len() <= 50, "two pages of entries: {}", all_ids.len());
    ada.click(".admin-tab[data-tab=server]").await?;
    ada.click(".admin-tab[data-tab=audit]").await?;
    let shown_ids =
        "return [...document.querySelectorAll('#admin-audit-body > tr')].map((tr) => Number(tr.dataset.auditId));";
    ada.wait_js(
        "the first page of the audit log",
        &format!("{{ const ids = (() => {{ {shown_ids} }})(); return ids.length === 25 && ids[0] === arguments[0]; }}"),
        vec![json!(all_ids[0])],
    )
    .await?;
    ada.wait_visible("#admin-audit-more").await?;
    ada.click("#admin-audit-more").await?;
    ada.wait_js(
        "the second page of the audit log",
        &format!("{{ const ids = (() => {{ {shown_ids} }})(); return ids.length === arguments[0] ? ids : null; }}"),
        vec![json!(all_ids.len())],
    )
    .await?;
    let ids = ada.js(shown_ids, vec![]).await?;
    ensure!(ids == json!(all_ids), "every entry once, newest first: {ids}");
    ada.wait_js("no more pages", "return document.getElementById('admin-audit-more').hidden;", vec![]).await?;

    // Server facts.
    ada.click(".admin-tab[data-tab=server]").await?;
    ada.wait_js(
        "the server facts",
        "const f = (k) => document.querySelector(`#admin-server-facts dd[data-fact=${k}]`)?.textContent;
         return f('database') === 'SQLite' && f('bus') === 'this node only' && f('users') === '4' && !!f('version')
           && f('maintenance') === 'none';",
        vec![],
    )
    .await?;
    // After an upgrade from before the search words' re-index, the console shows that
    // job and how far it got (here: not started, of the events the story has kept).
    srv.pending_search_reindex().await;
    ada.click("#admin-server-refresh").await?;
    ada.wait_js(
        "the re-index in the server facts",
        "const t = document.querySelector('#admin-server-facts dd[data-fact=maintenance]')?.textContent || '';
         return /^Re-indexing the search words of older messages: 0 % \\(0 of [1-9][0-9]* stored events?\\)$/.test(t) ? t : null;",
        vec![],
    )
    .await?;

    // Sign out everywhere, after a confirmation: cleo's open page goes to sign-in.
    ada.click(".admin-tab[data-tab=users]").await?;
    ada.fill("#admin-user-q", "cleo").await?;
    wait_users(&ada, &["cleo"]).await?;
    ada.click("#admin-users-body > tr[data-username=cleo] button[data-act=sessions]").await?;
    confirm(&ada, "Sign @cleo out on every device?").await?;
    ada.wait_text("#admin-users-status", "@cleo is signed out everywhere.").await?;
    cleo.wait_visible("#login-form").await?;
    let (s, body) = ada_api.get("/api/admin/audit?limit=1").await;
    ensure!(s == 200 && body["entries"][0]["action"] == "user.end_sessions", "{body}");

    // Disable (asked first) and enable again; an admin has no Disable button of their own.
    ada.fill("#admin-user-q", "clement").await?;
    wait_users(&ada, &["clement"]).await?;
    ada.click("#admin-users-body > tr[data-username=clement] button[data-act=disable]").await?;
    confirm(&ada, "Disable @clement?").await?;
    ada.wait_text("#admin-users-body > tr[data-username=clement] .admin-state", "Disabled").await?;
    let mut clement = srv.client();
    let (s, body) = clement.login("clement", &password_of("clement")).await;
    ensure!(s == 403 && body["error"]["code"] == "account_disabled", "a disabled account cannot sign in: {body}");
    ada.click("#admin-users-body > tr[data-username=clement] button[data-act=enable]").await?;
    ada.wait_text("#admin-users-body > tr[data-username=clement] .admin-state", "Active").await?;
    let (s, body) = clement.login("clement", &password_of("clement")).await;
    ensure!(s == 200, "enabled again: {body}");
    ada.fill("#admin-user-q", "ada").await?;
    wait_users(&ada, &["ada"]).await?;
    ensure!(
        !ada.is_visible("#admin-users-body > tr[data-username=ada] button[data-act=disable]").await?,
        "no Disable button on one's own row"
    );

    // The tabs follow the arrow keys (the ARIA tabs pattern); unarchive town.
    ada.type_keys(".admin-tab[data-tab=users]", &Key::Right.to_string()).await?;
    ada.wait_js(
        "the Rooms tab, selected and focused by ArrowRight",
        "const t = document.querySelector('.admin-tab[data-tab=rooms]');
         return t.getAttribute('aria-selected') === 'true' && document.activeElement === t &&
                !document.getElementById('admin-panel-rooms').hidden && document.getElementById('admin-panel-users').hidden;",
        vec![],
    )
    .await?;
    ada.click("#admin-rooms-body > tr[data-name=town] button[data-act=unarchive]").await?;
    ada.wait_text("#admin-rooms-body > tr[data-name=town] .admin-room-state", "Active").await?;
    let (_, body) = ada_api.get(&format!("/api/rooms/{town}")).await;
    ensure!(body["room"]["archived"] == json!(false), "town is open again: {body}");

    // Settings: the registration mode and invite links moved here from Settings.
    ada.click("#admin-close").await?;
    ada.click("#settings-btn").await?;
    ada.wait_visible("#open-admin-btn").await?;
    ada.click("#open-admin-btn").await?;
    ada.wait_visible("#registration-form").await?;
    ada.select("#registration-mode", "invite").await?;
    ada.click("#registration-form button[type=submit]").await?;
    ada.wait_text("#admin-ok", "Registration is now invite.").await?;
    ada.click("#create-invite-btn").await?;
    ada.wait_visible("#invite-url").await?;
    let invite = ada.js("return document.getElementById('invite-url').value;", vec![]).await?;
    ensure!(invite.as_str().unwrap_or_default().starts_with(&srv.url("/?invite=")), "an invite link: {invite}");
    // The default room: a public room every new account joins (public rooms offered).
    let offered = ada
        .wait_js(
            "the default room choices",
            "const o = [...document.querySelectorAll('#default-room-select > option')].map((o) => o.textContent);
             return o.length > 1 ? o : null;",
            vec![],
        )
        .await?;
    ensure!(offered == json!(["No default room", "#lobby", "#town"]), "the choices: {offered}");
    ada.select("#default-room-select", &lobby.to_string()).await?;
    ada.click("#default-room-form button[type=submit]").await?;
    ada.wait_text("#default-room-ok", "New accounts now join #lobby.").await?;
    let (_, cfg) = srv.client().get("/api/config").await;
    ensure!(cfg["default_room"] == json!(lobby), "the default room is set: {cfg}");

    for b in [&ada, &cleo, &bob, &again] {
        let errors = b.console_errors().await;
        ensure!(errors.is_empty(), "{}: console errors: {errors:#?}", b.name);
    }
    Ok(())
}
