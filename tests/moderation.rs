//! Moderation over real HTTP and WebSockets on every backend (SQLite, PostgreSQL,
//! MariaDB, and two nodes over Redis, where the people of a story sit on alternate
//! nodes): room roles and who may do what to whom, kick and ban, mute (with expiry),
//! read-only rooms and renames, moderation notices (live, in resume and in history),
//! moderators deleting others' messages, the default room, and user blocks
//! (docs/PROTOCOL.md §2.9, §3.10).

mod common;

use std::time::Duration;

use common::*;
use rtm::ws::protocol::{Event, EventKind, ServerFrame};
use serde_json::{Value, json};

fn code_of(f: &ServerFrame) -> &str {
    match f {
        ServerFrame::Error { code, .. } => code,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn api_code(body: &serde_json::Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// A moderation notice of `room` with this action.
fn notice(room: i64, action: &'static str) -> impl FnMut(&ServerFrame) -> bool {
    move |f| {
        matches!(f, ServerFrame::Notice(e)
            if e.room == room && e.kind == EventKind::Moderation && e.action.as_deref() == Some(action))
    }
}

fn event(f: ServerFrame) -> Event {
    match f {
        ServerFrame::Notice(e) => e,
        other => panic!("expected a notice, got {other:?}"),
    }
}

async fn join(c: &Client, room: i64) {
    let (s, b) = c.post(&format!("/api/rooms/{room}/join"), json!({})).await;
    assert_eq!(s, 200, "{b}");
}

async fn send(ws: &mut Ws, room: i64, text: &str) -> ServerFrame {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let cid = format!("m-{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    ws.request(json!({"type": "send", "room": room, "client_id": cid, "text": text})).await
}

async fn history(ws: &mut Ws, room: i64) -> Vec<Event> {
    match ws.request(json!({"type": "history", "room": room, "limit": 100})).await {
        ServerFrame::History { events, .. } => events,
        other => panic!("{other:?}"),
    }
}

async fn members(c: &Client, room: i64) -> serde_json::Value {
    let (s, b) = c.get(&format!("/api/rooms/{room}/members")).await;
    assert_eq!(s, 200, "{b}");
    b
}

fn entry(list: &serde_json::Value, id: i64) -> &serde_json::Value {
    list["members"]
        .as_array()
        .or_else(|| list["users"].as_array())
        .and_then(|a| a.iter().find(|m| m["id"] == id))
        .unwrap_or_else(|| panic!("{id} in {list}"))
}

async fn roles_and_who_may_do_what(b: Backend) {
    let srv = TestServer::start(b).await;
    let root = srv.user("root").await; // the first account: the site admin
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let carl = srv.user("carl").await;
    let dan = srv.user("dan").await;
    let (ann_id, bob_id, carl_id, dan_id, root_id) =
        (ann.id().await, bob.id().await, carl.id().await, dan.id().await, root.id().await);
    let room = ann.create_room("lounge", json!({})).await;
    for c in [&bob, &carl, &dan, &root] {
        join(c, room).await;
    }
    let path = |u: i64| format!("/api/rooms/{room}/members/{u}/role");

    // Only the owner (or the admin) names moderators; "owner" cannot be given.
    let (s, body) = carl.put(&path(bob_id), json!({"role": "moderator"})).await;
    assert_eq!((s, api_code(&body)), (403, "forbidden"), "a member cannot give roles");
    let (s, body) = ann.put(&path(bob_id), json!({"role": "owner"})).await;
    assert_eq!((s, api_code(&body)), (422, "invalid_role"));
    let (s, body) = ann.put(&path(bob_id), json!({"role": "moderator"})).await;
    assert_eq!(s, 204, "{body}");
    let (s, _) = root.put(&path(carl_id), json!({"role": "moderator"})).await;
    assert_eq!(s, 204, "the admin acts as owner");
    // ... with admin powers, so it is in the audit log (the owner's own change is not).
    let (s, log) = root.get("/api/admin/audit").await;
    assert_eq!(s, 200, "{log}");
    let roles: Vec<&Value> =
        log["entries"].as_array().expect("entries").iter().filter(|e| e["action"] == "room.role").collect();
    assert_eq!(roles.len(), 1, "{log}");
    assert_eq!((roles[0]["target"].as_str(), roles[0]["detail"]["user"].as_i64()), (Some("lounge"), Some(carl_id)));
    let list = members(&dan, room).await;
    assert_eq!(entry(&list, ann_id)["role"], "owner");
    assert_eq!(entry(&list, bob_id)["role"], "moderator");
    assert_eq!(entry(&list, dan_id)["role"], "member");
    // The site admin is listed with the rank the server gives them (so no client offers
    // to kick them), as their own RoomInfo says.
    assert_eq!(entry(&list, root_id)["role"], "owner");
    assert!(entry(&list, dan_id)["muted_until"].is_null());
    let wb = bob.ws().await;
    let mine = wb.hello_rooms().into_iter().find(|r| r.id == room).expect("room in hello");
    assert_eq!((mine.role.as_str(), mine.read_only), ("moderator", false));
    drop(wb);
    let (s, body) = ann.get(&format!("/api/rooms/{room}")).await;
    assert_eq!((s, body["room"]["role"].as_str()), (200, Some("owner")), "{body}");

    // A member cannot kick; a moderator cannot kick, ban or mute the owner, the admin
    // or another moderator; nobody moderates themselves.
    let (s, body) = dan.delete(&format!("/api/rooms/{room}/members/{carl_id}")).await;
    assert_eq!((s, api_code(&body)), (403, "forbidden"));
    for target in [ann_id, carl_id, root_id] {
        let (s, _) = bob.delete(&format!("/api/rooms/{room}/members/{target}")).await;
        assert_eq!(s, 403, "moderator kicks {target}");
        let (s, _) = bob.post(&format!("/api/rooms/{room}/bans"), json!({"user": target})).await;
        assert_eq!(s, 403, "moderator bans {target}");
        let (s, _) = bob.post(&format!("/api/rooms/{room}/mutes"), json!({"user": target, "minutes": 5})).await;
        assert_eq!(s, 403, "moderator mutes {target}");
    }
    let (s, _) = ann.delete(&format!("/api/rooms/{room}/members/{ann_id}")).await;
    assert_eq!(s, 403, "the owner cannot kick themselves");

    // A moderator deletes someone else's message; a member still cannot.
    let mut wd = dan.ws().await;
    let d1 = wd.say(room, "spam spam").await.expect("kept");
    let mut wc = carl.ws().await;
    let mut wa = ann.ws().await;
    let mut wb = bob.ws().await;
    let f = wd.request(json!({"type": "delete", "room": room, "seq": d1 - 1})).await;
    assert_eq!(code_of(&f), "message_not_found", "a notice is not a message");
    let c1 = wc.say(room, "carl's").await.expect("kept");
    let f = wd.request(json!({"type": "delete", "room": room, "seq": c1})).await;
    assert_eq!(code_of(&f), "forbidden");
    let f = wb.request(json!({"type": "delete", "room": room, "seq": d1})).await;
    assert!(matches!(f, ServerFrame::Ack { seq: Some(_), .. }), "moderator deletes: {f:?}");
    // The site admin (not a moderator here) deletes carl's: audited; bob's was not.
    let mut wr = root.ws().await;
    let f = wr.request(json!({"type": "delete", "room": room, "seq": c1})).await;
    assert!(matches!(f, ServerFrame::Ack { seq: Some(_), .. }), "the admin deletes: {f:?}");
    let (_, log) = root.get("/api/admin/audit").await;
    let dels: Vec<&Value> =
        log["entries"].as_array().expect("entries").iter().filter(|e| e["action"] == "room.delete_message").collect();
    assert_eq!(dels.len(), 1, "{log}");
    assert_eq!((dels[0]["detail"]["seq"].as_i64(), dels[0]["detail"]["author"].as_i64()), (Some(c1), Some(carl_id)));

    // A moderator kicks a member: the member's sockets leave the room, everyone sees
    // the notice (the subject too, before leaving).
    let (s, body) = bob.delete(&format!("/api/rooms/{room}/members/{dan_id}")).await;
    assert_eq!(s, 204, "{body}");
    let (f, _) = wa.recv_until(notice(room, "kick")).await;
    let e = event(f);
    assert_eq!((e.author.id, e.user.as_ref().map(|u| u.id)), (bob_id, Some(dan_id)));
    assert!(e.seq.is_some() && !e.text.is_empty(), "{e:?}");
    wd.recv_until(notice(room, "kick")).await;
    wd.recv_until(|f| matches!(f, ServerFrame::RoomLeft { room: r } if *r == room)).await;
    let f = send(&mut wd, room, "still here?").await;
    assert_eq!(code_of(&f), "not_a_member");
    // Removing him again: the answer says he is not a member, not that bob is not.
    let (s, body) = bob.delete(&format!("/api/rooms/{room}/members/{dan_id}")).await;
    assert_eq!((s, api_code(&body)), (403, "not_a_member"));
    assert_eq!(body["error"]["message"], "that person is not a member of this room", "{body}");
    join(&dan, room).await; // a kick is not a ban

    // Demoted, bob is a member again: no more kicking.
    let (s, _) = ann.put(&path(bob_id), json!({"role": "member"})).await;
    assert_eq!(s, 204);
    let (f, _) = wc.recv_until(notice(room, "role")).await;
    let e = event(f);
    assert_eq!((e.role.as_deref(), e.user.map(|u| u.id)), (Some("member"), Some(bob_id)));
    let (s, _) = bob.delete(&format!("/api/rooms/{room}/members/{dan_id}")).await;
    assert_eq!(s, 403);
    // Bad input: unknown people and rooms, bodies that do not parse.
    let (s, body) = ann.delete(&format!("/api/rooms/{room}/members/999999")).await;
    assert_eq!((s, api_code(&body)), (404, "user_not_found"));
    let (s, _) = ann.put(&path(bob_id), json!({"role": 7})).await;
    assert_eq!(s, 400);
    let (s, body) = ann.put("/api/rooms/999999/members/1/role", json!({"role": "member"})).await;
    assert_eq!((s, api_code(&body)), (404, "room_not_found"));
}

async fn kick_ban_and_unban(b: Backend) {
    let srv = TestServer::start(b).await;
    let _root = srv.user("root").await;
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let carl = srv.user("carl").await;
    let eve = srv.user("eve").await;
    let (bob_id, carl_id, eve_id) = (bob.id().await, carl.id().await, eve.id().await);
    let room = ann.create_room("club", json!({})).await;
    let private = ann.create_room("inner", json!({"private": true})).await;
    join(&bob, room).await;
    join(&carl, room).await;
    assert_eq!(ann.put(&format!("/api/rooms/{room}/members/{bob_id}/role"), json!({"role": "moderator"})).await.0, 204);
    let mut wc = carl.ws().await;
    let mut wa = ann.ws().await;

    // A moderator bans a member: out at once, notice to all.
    let (s, body) = bob.post(&format!("/api/rooms/{room}/bans"), json!({"user": carl_id})).await;
    assert_eq!(s, 204, "{body}");
    let (f, _) = wa.recv_until(notice(room, "ban")).await;
    assert_eq!(event(f).user.map(|u| u.id), Some(carl_id));
    wc.recv_until(|f| matches!(f, ServerFrame::RoomLeft { room: r } if *r == room)).await;
    let (s, body) = carl.post(&format!("/api/rooms/{room}/join"), json!({})).await;
    assert_eq!((s, api_code(&body)), (403, "banned"));
    // The room list says so, to carl only, so a client offers no Join.
    assert_eq!(listed(&carl, room).await["banned"], true);
    assert_eq!(listed(&eve, room).await["banned"], false);
    let f = wc.request(json!({"type": "join", "room": room})).await;
    assert_eq!(code_of(&f), "banned");
    let (s, body) = ann.post(&format!("/api/rooms/{room}/members"), json!({"username": "carl"})).await;
    assert_eq!((s, api_code(&body)), (403, "banned"), "a banned user cannot be re-added");
    // Someone not in the room can be banned too (then cannot join a private room's invite).
    let (s, _) = ann.post(&format!("/api/rooms/{private}/bans"), json!({"user": eve_id})).await;
    assert_eq!(s, 204);
    let (s, body) = ann.post(&format!("/api/rooms/{private}/members"), json!({"username": "eve"})).await;
    assert_eq!((s, api_code(&body)), (403, "banned"));

    // The ban list: owner and moderators only.
    let (s, list) = bob.get(&format!("/api/rooms/{room}/bans")).await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(entry(&list, carl_id)["username"], "carl");
    let (s, _) = eve.get(&format!("/api/rooms/{room}/bans")).await;
    assert_eq!(s, 403, "an outsider");
    join(&eve, room).await;
    let (s, _) = eve.get(&format!("/api/rooms/{room}/bans")).await;
    assert_eq!(s, 403, "a member");
    let (s, _) = eve.delete(&format!("/api/rooms/{room}/bans/{carl_id}")).await;
    assert_eq!(s, 403, "a member cannot unban");

    // Unban: carl may join again.
    let (s, _) = bob.delete(&format!("/api/rooms/{room}/bans/{carl_id}")).await;
    assert_eq!(s, 204);
    wa.recv_until(notice(room, "unban")).await;
    let (_, list) = ann.get(&format!("/api/rooms/{room}/bans")).await;
    assert_eq!(list["users"].as_array().map(Vec::len), Some(0), "{list}");
    assert_eq!(listed(&carl, room).await["banned"], false);
    join(&carl, room).await;
    let mut wc = carl.ws().await;
    assert!(wc.say(room, "back").await.is_some());
}

/// `room` as `GET /api/rooms` lists it to `who`.
async fn listed(who: &Client, room: i64) -> Value {
    let (s, list) = who.get("/api/rooms").await;
    assert_eq!(s, 200, "{list}");
    list["rooms"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["id"] == room))
        .cloned()
        .unwrap_or_else(|| panic!("room {room} is not listed: {list}"))
}

async fn mute_and_expiry(b: Backend) {
    let srv = TestServer::start(b).await;
    let _root = srv.user("root").await;
    let ann = srv.user("ann").await;
    let carl = srv.user("carl").await;
    let carl_id = carl.id().await;
    let room = ann.create_room("quiet", json!({})).await;
    join(&carl, room).await;
    let mut wa = ann.ws().await;
    let s1 = wa.say(room, "hello").await.expect("kept");
    let mut wc = carl.ws().await;
    for minutes in [0, -5, 43_201] {
        let (s, body) =
            ann.post(&format!("/api/rooms/{room}/mutes"), json!({"user": carl_id, "minutes": minutes})).await;
        assert_eq!((s, api_code(&body)), (422, "invalid_duration"), "{minutes}");
    }
    let before = rtm::chat::now_ms();
    let (s, body) = ann.post(&format!("/api/rooms/{room}/mutes"), json!({"user": carl_id, "minutes": 10})).await;
    assert_eq!(s, 204, "{body}");
    let (f, _) = wc.recv_until(notice(room, "mute")).await;
    let until = event(f).until.expect("until");
    assert!(until >= before + 600_000 && until < before + 660_000, "{until}");
    // Muted: send, react and edit are refused with the time; reading still works.
    match send(&mut wc, room, "let me speak").await {
        ServerFrame::Error { code, until: u, .. } => assert_eq!((code.as_str(), u), ("muted", Some(until))),
        other => panic!("{other:?}"),
    }
    let f = wc.request(json!({"type": "react", "room": room, "seq": s1, "emoji": "👍"})).await;
    assert_eq!(code_of(&f), "muted");
    // Refusals read the room cache; with several nodes each is re-read from the store,
    // but only the mute (never the room's whole entry, which others' sends use).
    let misses = rtm::metrics::ROOM_CACHE_MISSES.get();
    for _ in 0..5 {
        assert_eq!(code_of(&send(&mut wc, room, "again").await), "muted");
    }
    assert_eq!(rtm::metrics::ROOM_CACHE_MISSES.get(), misses, "refused sends do not reload the room");
    assert!(history(&mut wc, room).await.iter().any(|e| e.seq == Some(s1)));
    let list = members(&ann, room).await;
    assert_eq!(entry(&list, carl_id)["muted_until"], until);
    // Leaving and rejoining does not lift it.
    assert_eq!(carl.post(&format!("/api/rooms/{room}/leave"), json!({})).await.0, 204);
    join(&carl, room).await;
    let mut wc = carl.ws().await;
    assert_eq!(code_of(&send(&mut wc, room, "sneaky").await), "muted");
    // Unmute: at once.
    let (s, _) = ann.delete(&format!("/api/rooms/{room}/mutes/{carl_id}")).await;
    assert_eq!(s, 204);
    wc.recv_until(notice(room, "unmute")).await;
    assert!(matches!(send(&mut wc, room, "thanks").await, ServerFrame::Ack { .. }));

    // Expiry, without anyone lifting it: a mute set to end in a moment (through the
    // store, right after a mute through the API dropped every cached copy).
    let (s, _) = ann.post(&format!("/api/rooms/{room}/mutes"), json!({"user": carl_id, "minutes": 1})).await;
    assert_eq!(s, 204);
    let soon = rtm::chat::now_ms() + 1_500;
    srv.state.chat.store().mute(room, carl_id, soon).await.expect("store mute");
    wc.recv_until(notice(room, "mute")).await;
    match send(&mut wc, room, "now?").await {
        ServerFrame::Error { code, until: u, .. } => assert_eq!((code.as_str(), u), ("muted", Some(soon))),
        other => panic!("{other:?}"),
    }
    tokio::time::sleep(Duration::from_millis((soon - rtm::chat::now_ms()).max(0) as u64 + 200)).await;
    assert!(matches!(send(&mut wc, room, "now!").await, ServerFrame::Ack { .. }), "the mute expired");
    // Lifting a mute that has run out lifts nothing: no notice.
    assert_eq!(ann.delete(&format!("/api/rooms/{room}/mutes/{carl_id}")).await.0, 204);
    let unmutes = history(&mut wc, room)
        .await
        .iter()
        .filter(|e| e.kind == EventKind::Moderation && e.action.as_deref() == Some("unmute"))
        .count();
    assert_eq!(unmutes, 1, "only the unmute of a mute in force");
}

async fn read_only_rooms_and_renames(b: Backend) {
    let srv = TestServer::start(b).await;
    let root = srv.user("root").await;
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let carl = srv.user("carl").await;
    let bob_id = bob.id().await;
    let room = ann.create_room("announcements", json!({})).await;
    for c in [&bob, &carl, &root] {
        join(c, room).await;
    }
    assert_eq!(ann.put(&format!("/api/rooms/{room}/members/{bob_id}/role"), json!({"role": "moderator"})).await.0, 204);
    let (s, _) = carl.patch(&format!("/api/rooms/{room}"), json!({"read_only": true})).await;
    assert_eq!(s, 403, "a member cannot");
    let mut wc = carl.ws().await;
    let (s, body) = bob.patch(&format!("/api/rooms/{room}"), json!({"read_only": true})).await;
    assert_eq!((s, body["room"]["read_only"].as_bool()), (200, Some(true)), "{body}");
    let (f, _) = wc.recv_until(notice(room, "read_only")).await;
    assert_eq!(event(f).read_only, Some(true));
    let (f, _) = wc.recv_until(|f| matches!(f, ServerFrame::RoomUpdated { .. })).await;
    assert!(matches!(f, ServerFrame::RoomUpdated { read_only: true, .. }), "{f:?}");
    assert_eq!(code_of(&send(&mut wc, room, "me too").await), "read_only");
    for c in [&ann, &bob, &root] {
        let mut w = c.ws().await;
        assert!(matches!(send(&mut w, room, "announcement").await, ServerFrame::Ack { .. }), "owner/mod/admin");
    }
    let wc2 = carl.ws().await;
    assert!(wc2.hello_rooms().iter().any(|r| r.id == room && r.read_only), "hello says read-only");

    // Rename (a moderator may), with the usual name rules.
    let (s, body) = bob.patch(&format!("/api/rooms/{room}"), json!({"name": "news"})).await;
    assert_eq!((s, body["room"]["name"].as_str()), (200, Some("news")), "{body}");
    let (f, _) = wc.recv_until(notice(room, "rename")).await;
    assert_eq!(event(f).name.as_deref(), Some("news"));
    let (f, _) = wc.recv_until(|f| matches!(f, ServerFrame::RoomUpdated { .. })).await;
    assert!(matches!(f, ServerFrame::RoomUpdated { ref name, .. } if name == "news"), "{f:?}");
    let _other = ann.create_room("other", json!({})).await;
    let (s, body) = bob.patch(&format!("/api/rooms/{room}"), json!({"name": "Other"})).await;
    assert_eq!((s, api_code(&body)), (409, "room_name_taken"));
    let (s, _) = bob.patch(&format!("/api/rooms/{room}"), json!({"name": "  "})).await;
    assert_eq!(s, 422);
    // Open again.
    let (s, _) = ann.patch(&format!("/api/rooms/{room}"), json!({"read_only": false})).await;
    assert_eq!(s, 200);
    wc.recv_until(notice(room, "read_only")).await;
    assert!(matches!(send(&mut wc, room, "finally").await, ServerFrame::Ack { .. }));
}

async fn notices_live_resume_and_history(b: Backend) {
    let srv = TestServer::start(b).await;
    let _root = srv.user("root").await;
    let ann = srv.user("ann").await; // on the other node from bob (clusters)
    let bob = srv.user("bob").await;
    let carl = srv.user("carl").await;
    let (bob_id, carl_id) = (bob.id().await, carl.id().await);
    let room = ann.create_room("agora", json!({})).await;
    join(&bob, room).await;
    join(&carl, room).await;
    let mut wb = bob.ws().await;
    let mark = wb.say(room, "before").await.expect("kept");
    let base = format!("/api/rooms/{room}");
    assert_eq!(ann.put(&format!("{base}/members/{bob_id}/role"), json!({"role": "moderator"})).await.0, 204);
    assert_eq!(ann.post(&format!("{base}/mutes"), json!({"user": carl_id, "minutes": 3})).await.0, 204);
    assert_eq!(ann.delete(&format!("{base}/mutes/{carl_id}")).await.0, 204);
    assert_eq!(ann.patch(&base, json!({"name": "forum"})).await.0, 200);
    assert_eq!(ann.patch(&base, json!({"read_only": true})).await.0, 200);
    assert_eq!(ann.delete(&format!("{base}/members/{carl_id}")).await.0, 204);
    assert_eq!(ann.post(&format!("{base}/bans"), json!({"user": carl_id})).await.0, 204);
    assert_eq!(ann.delete(&format!("{base}/bans/{carl_id}")).await.0, 204);
    let want = ["role", "mute", "unmute", "rename", "read_only", "kick", "ban", "unban"];
    let mut live = vec![];
    while live.len() < want.len() {
        if let ServerFrame::Notice(e) = wb.recv().await
            && e.kind == EventKind::Moderation
        {
            live.push(e);
        }
    }
    let actions: Vec<&str> = live.iter().map(|e| e.action.as_deref().unwrap_or("")).collect();
    assert_eq!(actions, want, "live, in order");
    assert!(live.windows(2).all(|w| w[0].seq < w[1].seq), "each has its own seq");
    assert_eq!(live[0].role.as_deref(), Some("moderator"));
    assert!(live[1].until.is_some() && live[3].name.as_deref() == Some("forum"));
    assert_eq!(live[4].read_only, Some(true));
    assert!(live[5..].iter().all(|e| e.user.as_ref().map(|u| u.id) == Some(carl_id)));

    // Resume replays them exactly; history has them too.
    let mut wb2 = bob.ws().await;
    let f = wb2.request(json!({"type": "resume", "room": room, "after": mark})).await;
    let ServerFrame::Resumed { events, .. } = f else { panic!("{f:?}") };
    let replayed: Vec<Event> = events.into_iter().filter(|e| e.kind == EventKind::Moderation).collect();
    assert_eq!(replayed, live, "resume gives the live notices");
    let h: Vec<Event> = history(&mut wb2, room).await.into_iter().filter(|e| e.kind == EventKind::Moderation).collect();
    assert_eq!(h, live, "history gives the same notices");
}

async fn default_room_for_new_accounts(b: Backend) {
    let srv = TestServer::start(b).await;
    let root = srv.user("root").await;
    let ann = srv.user("ann").await;
    let lobby = root.create_room("lobby", json!({})).await;
    let secret = root.create_room("secret", json!({"private": true})).await;
    let (_, cfg) = ann.get("/api/config").await;
    assert!(cfg["default_room"].is_null(), "{cfg}");
    let (s, _) = ann.put("/api/admin/default-room", json!({"room": lobby})).await;
    assert_eq!(s, 403, "the admin only");
    let (s, body) = root.put("/api/admin/default-room", json!({"room": secret})).await;
    assert_eq!((s, api_code(&body)), (422, "not_public_room"));
    let (s, body) = root.put("/api/admin/default-room", json!({"room": 999999})).await;
    assert_eq!((s, api_code(&body)), (404, "room_not_found"));
    let (s, body) = root.put("/api/admin/default-room", json!({"room": lobby})).await;
    assert_eq!(s, 204, "{body}");
    let (_, cfg) = srv.client().get("/api/config").await;
    assert_eq!(cfg["default_room"], lobby);
    let (s, audit) = root.get("/api/admin/audit").await;
    assert_eq!(s, 200, "{audit}");
    let entry = &audit["entries"][0];
    assert_eq!(
        (entry["action"].as_str(), entry["detail"]["room"].as_i64()),
        (Some("settings.default_room"), Some(lobby))
    );
    assert_eq!(entry["actor"]["username"], "root");
    // A new account is in it at once, and the room's members see its `joined` notice
    // live, whether it signed up or the admin made it; an older one is not added.
    let mut wr = root.ws().await;
    let joined = |who: &'static str| move |f: &ServerFrame| matches!(f, ServerFrame::Notice(e) if e.room == lobby && e.kind == EventKind::Joined && e.text == format!("{who} joined"));
    let newbie = srv.user("newbie").await;
    wr.recv_until(joined("newbie")).await;
    let form = json!({"first_name": "Made", "last_name": "ByAdmin", "email": "made@example.org", "username": "made", "password": "made-password-1"});
    let (s, body) = root.post("/api/admin/users", form).await;
    assert_eq!(s, 201, "{body}");
    wr.recv_until(joined("made")).await;
    let ws = newbie.ws().await;
    assert!(ws.hello_rooms().iter().any(|r| r.id == lobby), "joined the default room");
    let list = members(&root, lobby).await;
    assert!(list["members"].as_array().expect("list").iter().any(|m| m["username"] == "newbie"), "{list}");
    assert!(!ann.ws().await.hello_rooms().iter().any(|r| r.id == lobby));
    // Cleared: nobody joins.
    assert_eq!(root.put("/api/admin/default-room", json!({"room": null})).await.0, 204);
    let (_, cfg) = srv.client().get("/api/config").await;
    assert!(cfg["default_room"].is_null(), "{cfg}");
    let later = srv.user("later").await;
    assert!(!later.ws().await.hello_rooms().iter().any(|r| r.id == lobby));
    // A default room that was deleted is no default room: the config says null.
    assert_eq!(root.put("/api/admin/default-room", json!({"room": lobby})).await.0, 204);
    assert_eq!(root.delete(&format!("/api/admin/rooms/{lobby}")).await.0, 204);
    let (_, cfg) = srv.client().get("/api/config").await;
    assert!(cfg["default_room"].is_null(), "{cfg}");
}

async fn blocking(b: Backend) {
    let srv = TestServer::start(b).await;
    let _root = srv.user("root").await;
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let (ann_id, bob_id) = (ann.id().await, bob.id().await);
    // A DM exists before the block; a room they share.
    let (s, dm) = bob.post("/api/dms", json!({"user_id": ann_id})).await;
    assert_eq!(s, 200, "{dm}");
    let dm = dm["room"]["id"].as_i64().expect("dm id");
    let room = ann.create_room("shared", json!({})).await;
    join(&bob, room).await;

    let (s, _) = ann.put(&format!("/api/me/blocks/{ann_id}"), json!({})).await;
    assert_eq!(s, 403, "not yourself");
    let (s, body) = ann.put("/api/me/blocks/999999", json!({})).await;
    assert_eq!((s, api_code(&body)), (404, "user_not_found"));
    let mut wa_tab = ann.ws().await; // another tab of ann's, open before the block
    let (s, _) = ann.put(&format!("/api/me/blocks/{bob_id}"), json!({})).await;
    assert_eq!(s, 204);
    let (f, _) = wa_tab.recv_until(|f| matches!(f, ServerFrame::BlockChanged { .. })).await;
    assert!(matches!(f, ServerFrame::BlockChanged { user, blocked: true } if user == bob_id), "{f:?}");
    let (s, list) = ann.get("/api/me/blocks").await;
    assert_eq!(s, 200);
    assert_eq!(entry(&list, bob_id)["username"], "bob");
    let mut wa = ann.ws().await;
    assert!(matches!(&wa.hello, Some(ServerFrame::Hello { blocked, .. }) if *blocked == vec![bob_id]));
    let mut wb = bob.ws().await;
    assert!(matches!(&wb.hello, Some(ServerFrame::Hello { blocked, .. }) if blocked.is_empty()));

    // No DM either way: opening, or sending in the existing one.
    let (s, body) = bob.post("/api/dms", json!({"user_id": ann_id})).await;
    assert_eq!((s, api_code(&body)), (403, "blocked"));
    let (s, body) = ann.post("/api/dms", json!({"user_id": bob_id})).await;
    assert_eq!((s, api_code(&body)), (403, "blocked"));
    assert_eq!(code_of(&send(&mut wb, dm, "hey").await), "blocked");
    assert_eq!(code_of(&send(&mut wa, dm, "hey").await), "blocked");
    // Nor typing in it (nobody can send there).
    wb.send_json(json!({"type": "typing", "id": "t1", "room": dm})).await;
    wb.send_json(json!({"type": "ping", "id": "p1"})).await;
    let (_, before) = wb.recv_until(|f| matches!(f, ServerFrame::Pong { .. })).await;
    assert!(
        before.iter().any(|f| matches!(f, ServerFrame::Error { code, .. } if code == "blocked")),
        "typing in a blocked DM: {before:?}"
    );
    // Room messages still arrive (the client collapses them).
    let s1 = wb.say(room, "in the room").await.expect("kept");
    wa.recv_until(|f| matches!(f, ServerFrame::Message(e) if e.seq == Some(s1))).await;
    // Blocking again changes nothing and tells no tab.
    assert_eq!(ann.put(&format!("/api/me/blocks/{bob_id}"), json!({})).await.0, 204);
    wa_tab.send_json(json!({"type": "ping", "id": "p2"})).await;
    let (_, before) = wa_tab.recv_until(|f| matches!(f, ServerFrame::Pong { .. })).await;
    assert!(!before.iter().any(|f| matches!(f, ServerFrame::BlockChanged { .. })), "{before:?}");

    // Unblock restores everything.
    assert_eq!(ann.delete(&format!("/api/me/blocks/{bob_id}")).await.0, 204);
    let (f, _) = wa_tab.recv_until(|f| matches!(f, ServerFrame::BlockChanged { .. })).await;
    assert!(matches!(f, ServerFrame::BlockChanged { user, blocked: false } if user == bob_id), "{f:?}");
    let (_, list) = ann.get("/api/me/blocks").await;
    assert_eq!(list["users"].as_array().map(Vec::len), Some(0));
    assert!(matches!(send(&mut wb, dm, "hi again").await, ServerFrame::Ack { .. }));
    let (s, _) = ann.post("/api/dms", json!({"user_id": bob_id})).await;
    assert_eq!(s, 200);
    let wa = ann.ws().await;
    assert!(matches!(&wa.hello, Some(ServerFrame::Hello { blocked, .. }) if blocked.is_empty()));
}

/// `rtm user add` against the database of a RUNNING server (SQLite): the new account
/// is in the default room, and the server, whose cached copy of the room did not know
/// it, lets it post there once it reads the CLI's `user.add` (its next housekeeping
/// tick, every 2 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_added_account_joins_the_default_room_of_a_running_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_path_buf();
    let mut config = rtm::Config::for_tests(d.clone());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    let srv = TestServer::start_config(Backend::Sqlite, config, dir).await;
    let root = srv.user("root").await;
    let lobby = root.create_room("lobby", json!({})).await;
    assert_eq!(root.put("/api/admin/default-room", json!({"room": lobby})).await.0, 204);
    let mut wr = root.ws().await;
    assert!(wr.say(lobby, "the room is cached now").await.is_some());

    let args = ["user", "add", "--email", "n@x.org", "--username", "newbie", "--first-name", "N", "--last-name", "B"];
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rtm"));
        for (k, _) in std::env::vars() {
            if k.starts_with("RTM_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("RTM_LOG", "warn").arg("--data-dir").arg(&d).args(args).arg("--password-stdin");
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("rtm starts");
        child.stdin.take().expect("stdin").write_all(b"newbie-password-1\n").expect("write stdin");
        child.wait_with_output().expect("rtm finishes")
    })
    .await
    .expect("rtm thread");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let mut newbie = srv.client();
    assert_eq!(newbie.login("newbie", "newbie-password-1").await.0, 200);
    let mut ws = newbie.ws().await;
    assert!(ws.hello_rooms().iter().any(|r| r.id == lobby), "in the default room");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match send(&mut ws, lobby, "hello everyone").await {
            ServerFrame::Ack { .. } => break,
            ServerFrame::Error { code, .. } => {
                assert!(tokio::time::Instant::now() < deadline, "send still refused: {code}");
            }
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

on_both_backends!(
    roles_and_who_may_do_what,
    kick_ban_and_unban,
    mute_and_expiry,
    read_only_rooms_and_renames,
    notices_live_resume_and_history,
    default_room_for_new_accounts,
    blocking,
);
