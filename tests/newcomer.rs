//! What a new user hit (issue 12), at the protocol level on every backend (SQLite,
//! PostgreSQL, MariaDB, and two nodes with the people split between them): an invite
//! link works while registration is closed; a person's new name reaches everyone who
//! shares a room with them, live, and only them; a room's owner and the admin manage
//! the members of public and private rooms, and the admin changes the settings of
//! rooms others own.

mod common;

use std::time::Duration;

use common::*;
use rtm::ws::protocol::{Profile, ServerFrame};
use serde_json::{Value, json};

fn assert_error(got: &(u16, Value), status: u16, code: &str) {
    let (s, b) = got;
    assert_eq!(*s, status, "expected {status} `{code}`, got {s}: {b}");
    assert_eq!(b["error"]["code"], code, "wrong error code: {b}");
}

fn form(username: &str, invite: Option<&str>) -> Value {
    let mut f = json!({
        "first_name": "New", "last_name": "Comer", "email": format!("{username}@example.org"),
        "username": username, "password": password_of(username),
    });
    if let Some(code) = invite {
        f["invite"] = json!(code);
    }
    f
}

/// Closed registration: nobody signs up on their own, but an invite link the admin
/// made is a deliberate exception and works (once).
async fn invites_work_while_registration_is_closed(b: Backend) {
    let srv = TestServer::start(b).await;
    let admin = srv.user("admin").await;
    let (s, body) = admin.put("/api/admin/registration", json!({ "mode": "closed" })).await;
    assert_eq!(s, 204, "{body}");

    assert_error(&srv.client().register_with(form("nina", None)).await, 403, "registration_closed");
    assert_error(&srv.client().register_with(form("nina", Some("   "))).await, 403, "registration_closed");
    assert_error(&srv.client().register_with(form("nina", Some("made-up"))).await, 403, "invalid_invite");

    let (s, inv) = admin.post("/api/admin/invites", json!({})).await;
    assert_eq!(s, 201, "the admin makes invite links in closed mode: {inv}");
    let code = inv["code"].as_str().expect("code").to_string();
    let mut nina = srv.client();
    let (s, body) = nina.register_with(form("nina", Some(&code))).await;
    assert_eq!(s, 201, "the invite works in closed mode: {body}");
    assert!(nina.cookie.is_some(), "and signs the newcomer in");
    assert_eq!(nina.me().await["username"], "nina");
    // Single use, and the mode stays closed.
    assert_error(&srv.client().register_with(form("otto", Some(&code))).await, 403, "invalid_invite");
    assert_error(&srv.client().register_with(form("otto", None)).await, 403, "registration_closed");
    let (_, cfg) = srv.client().get("/api/config").await;
    assert_eq!(cfg["registration"], "closed");
}

/// The `user_updated` frames a socket receives within `wait` (after the first one,
/// frames are collected until `quiet` passes without one).
async fn user_updates(ws: &mut Ws, wait: Duration) -> Vec<(Option<i64>, Profile)> {
    let mut out = vec![];
    let deadline = tokio::time::Instant::now() + wait;
    while let Some(f) = ws.try_recv(deadline.saturating_duration_since(tokio::time::Instant::now())).await {
        if let ServerFrame::UserUpdated { room, user } = f {
            out.push((room, user));
        }
    }
    out
}

async fn a_new_name_reaches_others_live(b: Backend) {
    let srv = TestServer::start(b).await;
    // On two nodes the clients alternate: ann, cat and bob's second tab on one node,
    // bob on the other.
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let cat = srv.user("cat").await;
    let bob_id = bob.id().await;
    let room = ann.create_room("plaza", json!({})).await;
    let (s, body) = bob.post(&format!("/api/rooms/{room}/join"), json!({})).await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = bob.post("/api/dms", json!({ "user_id": ann.id().await })).await;
    assert_eq!(s, 200, "{body}");
    let dm = body["room"]["id"].as_i64().expect("dm id");
    let mut bob_tab2 = srv.client();
    assert_eq!(bob_tab2.login("bob", &password_of("bob")).await.0, 200);

    let mut wa = ann.ws().await;
    let mut wb = bob.ws().await;
    let mut wb2 = bob_tab2.ws().await;
    let mut wc = cat.ws().await;
    let seq = wb.say(room, "before the rename").await.expect("kept");
    // Let the join/DM/presence chatter pass.
    wa.drain(Duration::from_millis(300)).await;
    wb.drain(Duration::from_millis(100)).await;
    wb2.drain(Duration::from_millis(100)).await;
    wc.drain(Duration::from_millis(100)).await;

    let (s, body) = bob.patch("/api/me", json!({ "first_name": "Robert", "last_name": "Baumeister" })).await;
    assert_eq!(s, 200, "{body}");
    let want =
        Profile { id: bob_id, username: "bob".into(), first_name: "Robert".into(), last_name: "Baumeister".into() };

    // Ann shares the room and the DM with bob: one frame for each.
    let mut got = vec![];
    while got.len() < 2 {
        let (f, _) = wa.recv_until(|f| matches!(f, ServerFrame::UserUpdated { .. })).await;
        if let ServerFrame::UserUpdated { room, user } = f {
            got.push((room, user));
        }
    }
    got.sort_by_key(|(r, _)| *r);
    let mut rooms = vec![Some(room), Some(dm)];
    rooms.sort();
    assert_eq!(got, rooms.into_iter().map(|r| (r, want.clone())).collect::<Vec<_>>());
    // Bob's own tabs (on either node) hear it too, once without a room.
    for w in [&mut wb, &mut wb2] {
        let (f, _) = w.recv_until(|f| matches!(f, ServerFrame::UserUpdated { room: None, .. })).await;
        assert_eq!(f, ServerFrame::UserUpdated { room: None, user: want.clone() });
    }
    // Cat shares nothing with bob: nothing for her.
    let stray = user_updates(&mut wc, Duration::from_millis(800)).await;
    assert!(stray.is_empty(), "cat shares no room with bob: {stray:?}");

    // What is read afresh shows the new name.
    let (_, members) = ann.get(&format!("/api/rooms/{room}/members")).await;
    let shown = members["members"].as_array().into_iter().flatten().find(|m| m["id"] == bob_id).cloned();
    assert_eq!(
        shown.as_ref().map(|m| (&m["first_name"], &m["last_name"])),
        Some((&json!("Robert"), &json!("Baumeister")))
    );

    // An email change is nobody else's business: no frame to ann.
    let (s, body) =
        bob.patch("/api/me", json!({ "email": "robert@example.org", "current_password": password_of("bob") })).await;
    assert_eq!(s, 200, "{body}");
    let stray = user_updates(&mut wa, Duration::from_millis(800)).await;
    assert!(stray.is_empty(), "an email change is not announced: {stray:?}");

    // A new username: announced, and history names the author by it.
    let (s, body) = bob.patch("/api/me", json!({ "username": "robert" })).await;
    assert_eq!(s, 200, "{body}");
    let (f, _) = wa
        .recv_until(|f| matches!(f, ServerFrame::UserUpdated { room: Some(r), user } if *r == room && user.username == "robert"))
        .await;
    let ServerFrame::UserUpdated { user, .. } = f else { unreachable!() };
    assert_eq!((user.first_name.as_str(), user.last_name.as_str()), ("Robert", "Baumeister"));
    let (s, hist) = ann.get(&format!("/api/rooms/{room}/messages")).await;
    assert_eq!(s, 200, "{hist}");
    let ev = hist["events"].as_array().into_iter().flatten().find(|e| e["seq"] == seq).cloned().expect("the message");
    assert_eq!(ev["author"]["username"], "robert");
}

async fn owners_and_the_admin_manage_rooms(b: Backend) {
    let srv = TestServer::start(b).await;
    let admin = srv.user("admin").await; // the first account
    let olga = srv.user("olga").await;
    let mike = srv.user("mike").await;
    let mike_id = mike.id().await;
    let olga_id = olga.id().await;
    let public = olga.create_room("town hall", json!({ "topic": "Everyone" })).await;
    let (s, body) = mike.post(&format!("/api/rooms/{public}/join"), json!({})).await;
    assert_eq!(s, 200, "{body}");
    let mut wm = mike.ws().await;

    // A member who does not own the room removes nobody.
    assert_error(&mike.delete(&format!("/api/rooms/{public}/members/{olga_id}")).await, 403, "forbidden");

    // The owner of a PUBLIC room removes a member: they hear room_left, and may come back.
    let (s, body) = olga.delete(&format!("/api/rooms/{public}/members/{mike_id}")).await;
    assert_eq!(s, 204, "{body}");
    wm.recv_until(|f| matches!(f, ServerFrame::RoomLeft { room } if *room == public)).await;
    let (_, members) = olga.get(&format!("/api/rooms/{public}/members")).await;
    assert!(!members["members"].as_array().into_iter().flatten().any(|m| m["id"] == mike_id), "{members}");
    let (s, body) = mike.post(&format!("/api/rooms/{public}/join"), json!({})).await;
    assert_eq!(s, 200, "a public room can be joined again: {body}");
    assert_error(&olga.delete(&format!("/api/rooms/{public}/members/{olga_id}")).await, 403, "forbidden");

    // The admin, a member of a room olga owns, changes its settings and its members.
    assert_error(&admin.patch(&format!("/api/rooms/{public}"), json!({ "topic": "x" })).await, 403, "not_a_member");
    let (s, body) = admin.post(&format!("/api/rooms/{public}/join"), json!({})).await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = admin.patch(&format!("/api/rooms/{public}"), json!({ "topic": "Moderated" })).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!((body["room"]["topic"].as_str(), body["room"]["owner"].as_i64()), (Some("Moderated"), Some(olga_id)));
    let (s, body) = admin.delete(&format!("/api/rooms/{public}/members/{mike_id}")).await;
    assert_eq!(s, 204, "{body}");
    // A private room too (the owner's invitation is the way back).
    let private = olga.create_room("back office", json!({ "private": true })).await;
    let (s, body) = olga.post(&format!("/api/rooms/{private}/members"), json!({ "username": "mike" })).await;
    assert_eq!(s, 204, "{body}");
    let (s, body) = olga.delete(&format!("/api/rooms/{private}/members/{mike_id}")).await;
    assert_eq!(s, 204, "{body}");
    assert_error(&mike.post(&format!("/api/rooms/{private}/join"), json!({})).await, 404, "room_not_found");
}

on_both_backends!(
    invites_work_while_registration_is_closed,
    a_new_name_reaches_others_live,
    owners_and_the_admin_manage_rooms,
);
