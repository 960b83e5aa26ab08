//! The admin console's API (issue 15) over real sockets, on SQLite, PostgreSQL,
//! MariaDB and two nodes over Redis (where the people of a story sit on different
//! nodes, so live effects cross the bus): user listing with search, sort and paging;
//! promote/demote and the last-admin guard; single-use reset links; ending sessions;
//! room listing, archiving and deleting; server facts; the audit log and its
//! retention; and 403 for everyone else on every endpoint.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use rtm::ws::protocol::ServerFrame;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[track_caller]
fn assert_error(got: &(u16, Value), status: u16, code: &str) {
    let (s, b) = got;
    assert_eq!(*s, status, "expected {status} `{code}`, got {s}: {b}");
    assert_eq!(b["error"]["code"], code, "wrong error code: {b}");
}

#[track_caller]
fn no_content(got: &(u16, Value)) {
    assert_eq!(got.0, 204, "expected 204, got {}: {}", got.0, got.1);
}

/// The admin (first account) and, on a cluster, the next person on the other node.
async fn admin_and(srv: &TestServer, other: &str) -> (Client, Client) {
    let admin = srv.user("root").await;
    let other = srv.user(other).await;
    (admin, other)
}

/// Usernames of a user-list answer, in order.
fn names(list: &Value) -> Vec<String> {
    list["users"].as_array().expect("users").iter().map(|u| u["username"].as_str().unwrap_or("").to_string()).collect()
}

/// The newest audit entries (as the console reads them).
async fn audit(admin: &Client) -> Vec<Value> {
    let (s, b) = admin.get("/api/admin/audit?limit=200").await;
    assert_eq!(s, 200, "{b}");
    b["entries"].as_array().expect("entries").clone()
}

/// The newest audit entry with this action.
#[track_caller]
fn entry<'a>(entries: &'a [Value], action: &str) -> &'a Value {
    entries.iter().find(|e| e["action"] == action).unwrap_or_else(|| panic!("no {action} entry in {entries:?}"))
}

/// Reads until the socket gets `closing` `session_ended` and then ends.
async fn expect_session_ended(ws: &mut Ws) {
    loop {
        match ws.try_recv(WAIT).await {
            Some(ServerFrame::Closing { code, .. }) => {
                assert_eq!(code, "session_ended");
                break;
            }
            Some(_) => continue,
            None => panic!("the socket ended or stayed open without a `closing` frame"),
        }
    }
    let end = tokio::time::timeout(WAIT, ws.stream.next()).await.expect("the server closes the socket");
    assert!(matches!(end, None | Some(Ok(Message::Close(_))) | Some(Err(_))), "{end:?}");
}

async fn user_list(admin: &Client, query: &str) -> Value {
    let (s, b) = admin.get(&format!("/api/admin/users{query}")).await;
    assert_eq!(s, 200, "{b}");
    b
}

// 1. The user list: search, sort, paging, last seen.
async fn users_listing(b: Backend) {
    let srv = TestServer::start(b).await;
    let admin = srv.user("root").await;
    let mut people = Vec::new();
    for n in ["carol", "alice", "bob", "dora"] {
        people.push(srv.user(n).await);
    }
    // Signing in marks "last seen"; bob is the most recent.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut again = srv.client();
    assert_eq!(again.login("bob", &password_of("bob")).await.0, 200);

    let all = user_list(&admin, "").await;
    assert_eq!(all["total"], 5);
    assert_eq!(names(&all), ["alice", "bob", "carol", "dora", "root"], "by name is the default");
    let u = &all["users"][0];
    for field in ["id", "username", "first_name", "last_name", "email", "is_admin", "disabled"] {
        assert!(!u[field].is_null(), "{field} missing: {u}");
    }
    assert!(u["created_at"].as_i64().is_some_and(|t| t > 0), "{u}");
    assert!(u["last_seen"].as_i64().is_some(), "sign-up signs in, so alice was seen: {u}");

    let seen = user_list(&admin, "?sort=last_seen").await;
    assert_eq!(names(&seen)[0], "bob", "{seen}");
    // Going offline marks it too: dora's only socket closes, and she is the most recent.
    let ws = people[3].ws().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(ws);
    let deadline = tokio::time::Instant::now() + WAIT;
    while names(&user_list(&admin, "?sort=last_seen").await)[0] != "dora" {
        assert!(tokio::time::Instant::now() < deadline, "closing dora's socket did not mark her last seen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let created = user_list(&admin, "?sort=created").await;
    assert_eq!(names(&created), ["dora", "bob", "alice", "carol", "root"], "newest first");

    let page1 = user_list(&admin, "?limit=2").await;
    let page2 = user_list(&admin, "?limit=2&offset=2").await;
    let page3 = user_list(&admin, "?limit=2&offset=4").await;
    assert_eq!(
        (names(&page1), names(&page2), names(&page3)),
        (vec!["alice".to_string(), "bob".into()], vec!["carol".to_string(), "dora".into()], vec!["root".to_string()])
    );
    assert_eq!(page2["total"], 5);

    let found = user_list(&admin, "?q=DOR").await;
    assert_eq!(names(&found), ["dora"], "username and email, any case: {found}");
    let found = user_list(&admin, "?q=example.org&limit=1").await;
    assert_eq!(found["total"], 5);
    assert_eq!(names(&found).len(), 1);
    let none = user_list(&admin, "?q=zzz").await;
    assert_eq!((none["total"].as_i64(), names(&none).len()), (Some(0), 0));
    // LIKE wildcards are plain characters.
    assert_eq!(user_list(&admin, "?q=%25").await["total"], 0);
    assert_eq!(admin.get("/api/admin/users?sort=age").await.0, 400);
}

// 2. Promote, demote, and never no admin.
async fn promote_demote_last_admin(b: Backend) {
    let srv = TestServer::start(b).await;
    let (mut admin, bob) = admin_and(&srv, "bob").await;
    let (root_id, bob_id) = (admin.id().await, bob.id().await);

    assert_error(&admin.post(&format!("/api/admin/users/{root_id}/demote"), json!({})).await, 409, "last_admin");
    assert_error(&bob.post(&format!("/api/admin/users/{bob_id}/promote"), json!({})).await, 403, "forbidden");
    no_content(&admin.post(&format!("/api/admin/users/{bob_id}/promote"), json!({})).await);
    assert_eq!(bob.me().await["is_admin"], true);
    // Bob, now an admin on his node, demotes the first admin: root's sessions end (an
    // open socket must not keep admin powers), on the other node too.
    let mut ws_root = admin.ws().await;
    // A socket opened with an API token is not a session, but it would keep admin
    // powers too: it closes as well.
    let (s, tok) = admin.post("/api/me/tokens", json!({"name": "bot"})).await;
    assert_eq!(s, 201, "{tok}");
    let token = tok["token"].as_str().expect("token").to_string();
    let mut ws_token = Ws::connect(admin.addr, None, None, Some(&token)).await.expect("bearer websocket");
    no_content(&bob.post(&format!("/api/admin/users/{root_id}/demote"), json!({})).await);
    expect_session_ended(&mut ws_root).await;
    let closing = loop {
        match ws_token.try_recv(WAIT).await {
            Some(ServerFrame::Closing { code, reason }) => break (code, reason),
            Some(_) => continue,
            None => panic!("the token socket stayed open or ended without `closing`"),
        }
    };
    assert_eq!(closing, ("session_ended".to_string(), "your admin rights were removed".to_string()));
    assert_error(&admin.get("/api/me").await, 401, "unauthenticated");
    assert_eq!(admin.login("root", &password_of("root")).await.0, 200);
    assert_eq!(admin.me().await["is_admin"], false);
    assert_error(&admin.get("/api/admin/users").await, 403, "forbidden");
    assert_error(&bob.post(&format!("/api/admin/users/{bob_id}/demote"), json!({})).await, 409, "last_admin");
    assert_eq!(bob.me().await["is_admin"], true);
    // Demoting someone who is not an admin changes nothing (their session stays).
    no_content(&bob.post(&format!("/api/admin/users/{root_id}/demote"), json!({})).await);
    assert_eq!(admin.me().await["is_admin"], false);
    assert_error(&bob.post("/api/admin/users/999999/promote", json!({})).await, 404, "user_not_found");
    assert_eq!(bob.post("/api/admin/users/x/promote", json!({})).await.0, 400);

    let log = audit(&bob).await;
    let promote = entry(&log, "user.promote");
    assert_eq!(promote["actor"]["username"], "root");
    assert_eq!(promote["target"], "bob");
    assert_eq!(promote["detail"]["id"], bob_id);
    let demote = entry(&log, "user.demote");
    assert_eq!(demote["actor"]["username"], "bob");
    assert_eq!(demote["target"], "root");
    // The refused demotions left no entry.
    assert_eq!(log.iter().filter(|e| e["action"] == "user.demote").count(), 2, "{log:?}");
}

// 2b. Two admins demoting, or disabling, each other at the same moment: exactly one
// succeeds, so an admin always remains (the check and the write share one lock).
async fn last_admin_races(b: Backend) {
    let srv = TestServer::start(b).await;
    let (root, bob) = admin_and(&srv, "bob").await;
    let ids = [root.id().await, bob.id().await];
    let names = ["root", "bob"];
    for round in 0..6 {
        // Whoever is still an enabled admin makes the other one an enabled admin again.
        let mut admin = None;
        for (k, name) in names.iter().enumerate() {
            let mut c = srv.client();
            if c.login(name, &password_of(name)).await.0 == 200 && c.me().await["is_admin"] == true {
                admin = Some((k, c));
            }
        }
        let (k, a) = admin.expect("one admin is left");
        let other = 1 - k;
        no_content(&a.post(&format!("/api/admin/users/{}/enable", ids[other]), json!({})).await);
        no_content(&a.post(&format!("/api/admin/users/{}/promote", ids[other]), json!({})).await);
        let mut o = srv.client();
        assert_eq!(o.login(names[other], &password_of(names[other])).await.0, 200);
        let verb = if round % 2 == 0 { "demote" } else { "disable" };
        let (pa, po) =
            (format!("/api/admin/users/{}/{verb}", ids[other]), format!("/api/admin/users/{}/{verb}", ids[k]));
        let (x, y) = tokio::join!(a.post(&pa, json!({})), o.post(&po, json!({})));
        let won = [x.0, y.0].iter().filter(|s| **s == 204).count();
        assert_eq!(won, 1, "round {round}, {verb}: {x:?} / {y:?}");
    }
}

// 3. Reset links: single use, 24 h, end every session.
async fn reset_link_single_use(b: Backend) {
    let srv = TestServer::start(b).await;
    let (admin, bob) = admin_and(&srv, "bob").await;
    let bob_id = bob.id().await;
    let mut ws = bob.ws().await;

    let (s, link) = admin.post(&format!("/api/admin/users/{bob_id}/reset-link"), json!({})).await;
    assert_eq!(s, 201, "{link}");
    let code = link["code"].as_str().expect("code").to_string();
    assert_eq!(link["url"], format!("{}/?reset={code}", srv.origin()));
    let expires = link["expires_at"].as_i64().expect("expires_at");
    let now = rtm::chat::now_ms();
    assert!((expires - now - 24 * 3600 * 1000).abs() < 60_000, "valid 24 h: {expires} vs {now}");

    // Checking a code spends nothing, and tells a good one from a bad one.
    let anon = srv.client();
    no_content(&anon.post("/api/password-reset/check", json!({"code": code})).await);
    no_content(&anon.post("/api/password-reset/check", json!({"code": code})).await);
    assert_error(&anon.post("/api/password-reset/check", json!({"code": "nope"})).await, 400, "invalid_reset_code");
    assert_error(&anon.post("/api/password-reset/check", json!({"code": ""})).await, 400, "invalid_reset_code");
    // A password the rules refuse leaves the code unspent.
    assert_error(
        &anon.post("/api/password-reset", json!({"code": code, "password": "short"})).await,
        422,
        "invalid_password",
    );
    no_content(&anon.post("/api/password-reset", json!({"code": code, "password": "a-new-password-1"})).await);
    expect_session_ended(&mut ws).await;
    assert_error(&bob.get("/api/me").await, 401, "unauthenticated");
    assert_eq!(srv.client().login("bob", &password_of("bob")).await.0, 401);
    assert_eq!(srv.client().login("bob", "a-new-password-1").await.0, 200);
    assert_error(&anon.post("/api/password-reset/check", json!({"code": code})).await, 400, "invalid_reset_code");

    assert_error(
        &anon.post("/api/password-reset", json!({"code": code, "password": "another-password-2"})).await,
        400,
        "invalid_reset_code",
    );
    assert_error(
        &anon.post("/api/password-reset", json!({"code": "nope", "password": "another-password-2"})).await,
        400,
        "invalid_reset_code",
    );
    assert_error(
        &anon.post("/api/password-reset", json!({"code": "", "password": "another-password-2"})).await,
        400,
        "invalid_reset_code",
    );
    // The Origin rule applies (no sign-in needed, but a browser on another site is refused).
    let r = reqwest::Client::new()
        .post(srv.url("/api/password-reset"))
        .header("origin", "http://evil.example")
        .json(&json!({"code": code, "password": "another-password-2"}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 403);

    // An expired code is refused too (its row aged in the database).
    let (_, link2) = admin.post(&format!("/api/admin/users/{bob_id}/reset-link"), json!({})).await;
    let hash = rtm::auth::hash_secret(link2["code"].as_str().expect("code"));
    no_content(&anon.post("/api/password-reset/check", json!({"code": link2["code"]})).await);
    age_reset_code(&srv, &hash).await;
    assert_error(
        &anon.post("/api/password-reset/check", json!({"code": link2["code"]})).await,
        400,
        "invalid_reset_code",
    );
    assert_error(
        &anon.post("/api/password-reset", json!({"code": link2["code"], "password": "another-password-2"})).await,
        400,
        "invalid_reset_code",
    );

    let log = audit(&admin).await;
    let issued = entry(&log, "user.reset_link");
    assert_eq!((issued["target"].as_str(), issued["actor"]["username"].as_str()), (Some("bob"), Some("root")));
    assert!(!issued.to_string().contains(&code), "the code never enters the log");
    assert_eq!(entry(&log, "user.password_reset")["actor"]["username"], "bob");
}

/// Moves a reset code's expiry into the past, straight in the database.
async fn age_reset_code(srv: &TestServer, hash: &str) {
    use sqlx::{Connection, Executor};
    sqlx::any::install_default_drivers();
    let url = srv.config.database_url();
    let mut conn = sqlx::AnyConnection::connect(&url).await.expect("connect");
    let sql = format!("UPDATE password_resets SET expires_at = 1 WHERE code_hash = '{hash}'");
    conn.execute(sqlx::AssertSqlSafe(sql)).await.expect("update");
}

// 4. Ending a user's sessions closes their sockets, on whichever node.
async fn end_sessions(b: Backend) {
    let srv = TestServer::start(b).await;
    let (admin, bob) = admin_and(&srv, "bob").await;
    let bob_id = bob.id().await;
    let mut ws = bob.ws().await;
    let mut ws_admin = admin.ws().await;

    no_content(&admin.delete(&format!("/api/admin/users/{bob_id}/sessions")).await);
    expect_session_ended(&mut ws).await;
    assert_error(&bob.get("/api/me").await, 401, "unauthenticated");
    // Nobody else's socket closed.
    let f = ws_admin.request(json!({"type": "ping"})).await;
    assert!(matches!(f, ServerFrame::Pong { .. }), "{f:?}");
    // They can sign in again.
    assert_eq!(srv.client().login("bob", &password_of("bob")).await.0, 200);
    assert_error(&admin.delete("/api/admin/users/999999/sessions").await, 404, "user_not_found");
    let log = audit(&admin).await;
    assert_eq!(entry(&log, "user.end_sessions")["target"], "bob");
}

// 5. The room list: public and private rooms, member counts, no DMs.
async fn rooms_listing(b: Backend) {
    let srv = TestServer::start(b).await;
    let (admin, bob) = admin_and(&srv, "bob").await;
    let general = bob.create_room("general", json!({})).await;
    let secret = bob.create_room("secret", json!({"private": true})).await;
    admin.create_room("announcements", json!({"topic": "news"})).await;
    assert_eq!(admin.post(&format!("/api/rooms/{general}/join"), json!({})).await.0, 200);
    let bob_id = bob.id().await;
    assert_eq!(admin.post("/api/dms", json!({"user_id": bob_id})).await.0 / 100, 2);

    let (s, list) = admin.get("/api/admin/rooms").await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["total"], 3, "rooms, not DMs: {list}");
    let rooms = list["rooms"].as_array().expect("rooms");
    let names: Vec<&str> = rooms.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["announcements", "general", "secret"]);
    let g = &rooms[1];
    assert_eq!(
        (g["id"].as_i64(), g["members"].as_i64(), g["private"].as_bool()),
        (Some(general), Some(2), Some(false))
    );
    assert_eq!(g["owner"]["username"], "bob");
    assert_eq!(g["owner"]["id"], bob_id);
    assert_eq!((g["archived"].as_bool(), g["read_only"].as_bool()), (Some(false), Some(false)));
    assert!(g["created_at"].as_i64().is_some() && g["last_seq"].as_i64().is_some(), "{g}");
    let s_ = &rooms[2];
    assert_eq!(
        (s_["id"].as_i64(), s_["private"].as_bool(), s_["members"].as_i64()),
        (Some(secret), Some(true), Some(1))
    );

    let (_, found) = admin.get("/api/admin/rooms?q=NEWS").await;
    assert_eq!(found["total"], 1, "name or topic: {found}");
    let (_, page) = admin.get("/api/admin/rooms?offset=1&limit=1").await;
    assert_eq!(page["rooms"][0]["name"], "general");
    assert_eq!(page["total"], 3);
}

/// Sends a text and returns the error code, if it was refused.
async fn send_code(ws: &mut Ws, room: i64, text: &str) -> Option<String> {
    let cid = format!("c-{}", ws.new_id());
    match ws.request(json!({"type": "send", "room": room, "client_id": cid, "text": text})).await {
        ServerFrame::Ack { .. } => None,
        ServerFrame::Error { code, .. } => Some(code),
        other => panic!("unexpected reply {other:?}"),
    }
}

// 6. Archive: nobody sends (on any node), everyone still reads; unarchive.
async fn archive_blocks_sends(b: Backend) {
    let srv = TestServer::start(b).await;
    let (admin, bob) = admin_and(&srv, "bob").await;
    let room = bob.create_room("general", json!({})).await;
    let mut ws = bob.ws().await;
    assert_eq!(send_code(&mut ws, room, "before").await, None);

    no_content(&admin.post(&format!("/api/admin/rooms/{room}/archive"), json!({})).await);
    // Members' open connections hear it at once (on every node).
    let (f, _) = ws.recv_until(|f| matches!(f, ServerFrame::RoomUpdated { .. })).await;
    assert!(matches!(f, ServerFrame::RoomUpdated { archived: true, room: r, .. } if r == room), "{f:?}");
    assert_eq!(send_code(&mut ws, room, "during").await.as_deref(), Some("room_archived"));
    // The owner is refused like anyone; reading still works.
    let (s, hist) = bob.get(&format!("/api/rooms/{room}/messages")).await;
    assert_eq!(s, 200);
    assert!(hist.to_string().contains("before") && !hist.to_string().contains("during"), "{hist}");
    let (_, details) = bob.get(&format!("/api/rooms/{room}")).await;
    assert_eq!(details["room"]["archived"], true, "{details}");
    let (_, list) = admin.get("/api/admin/rooms").await;
    assert_eq!(list["rooms"][0]["archived"], true);

    no_content(&admin.post(&format!("/api/admin/rooms/{room}/unarchive"), json!({})).await);
    let (f, _) = ws.recv_until(|f| matches!(f, ServerFrame::RoomUpdated { .. })).await;
    assert!(matches!(f, ServerFrame::RoomUpdated { archived: false, .. }), "{f:?}");
    assert_eq!(send_code(&mut ws, room, "after").await, None);
    assert_error(&admin.post("/api/admin/rooms/999999/archive", json!({})).await, 404, "room_not_found");
    let log = audit(&admin).await;
    assert_eq!(entry(&log, "room.archive")["target"], "general");
    assert_eq!(entry(&log, "room.unarchive")["detail"]["id"], room);
}

// 7. Delete: members on every node get `room_left`; the messages go.
async fn delete_room(b: Backend) {
    let srv = TestServer::start(b).await;
    let (admin, bob) = admin_and(&srv, "bob").await;
    let room = bob.create_room("doomed", json!({})).await;
    assert_eq!(admin.post(&format!("/api/rooms/{room}/join"), json!({})).await.0, 200);
    let mut ws_bob = bob.ws().await;
    let mut ws_admin = admin.ws().await;
    assert_eq!(send_code(&mut ws_bob, room, "last words").await, None);
    assert!(srv.state.chat.store().count_messages(room).await.expect("count") > 0);
    upload(&admin, room, 777).await;
    assert_eq!(files_bytes(&admin).await, 777);

    no_content(&admin.delete(&format!("/api/admin/rooms/{room}")).await);
    for ws in [&mut ws_bob, &mut ws_admin] {
        let (f, _) = ws.recv_until(|f| matches!(f, ServerFrame::RoomLeft { .. })).await;
        assert!(matches!(f, ServerFrame::RoomLeft { room: r } if r == room), "{f:?}");
    }
    assert_error(&bob.get(&format!("/api/rooms/{room}")).await, 404, "room_not_found");
    assert_eq!(srv.state.chat.store().count_messages(room).await.expect("count"), 0);
    // Its files go too: the rows with the room, the bytes at the sweep it triggers.
    let deadline = tokio::time::Instant::now() + WAIT;
    while files_bytes(&admin).await != 0 {
        assert!(tokio::time::Instant::now() < deadline, "the deleted room's file is still on disk");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(send_code(&mut ws_bob, room, "again").await.as_deref(), Some("room_not_found"));
    let (_, list) = admin.get("/api/admin/rooms").await;
    assert_eq!(list["total"], 0);
    // The name is free again.
    bob.create_room("doomed", json!({})).await;
    assert_error(&admin.delete("/api/admin/rooms/999999").await, 404, "room_not_found");
    let log = audit(&admin).await;
    let e = entry(&log, "room.delete");
    assert_eq!((e["target"].as_str(), e["detail"]["members"].as_i64()), (Some("doomed"), Some(2)));
}

/// Uploads a text file of `len` bytes to a room (a pending upload).
async fn upload(c: &Client, room: i64, len: usize) {
    let r = c
        .http
        .post(format!("{}/api/rooms/{room}/files?name=notes.txt", c.base))
        .header("content-type", "text/plain")
        .body(vec![b'x'; len])
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status().as_u16(), 201, "{:?}", r.text().await);
}

/// The server's `files_bytes` as the console reads it.
async fn files_bytes(admin: &Client) -> i64 {
    let (s, f) = admin.get("/api/admin/server").await;
    assert_eq!(s, 200, "{f}");
    f["storage"]["files_bytes"].as_i64().expect("files_bytes")
}

// 8. Server facts.
async fn server_facts(b: Backend) {
    let srv = TestServer::start(b).await;
    let admin = srv.user("root").await;
    let mut ws = admin.ws().await;
    let room = admin.create_room("one", json!({})).await;
    upload(&admin, room, 1234).await;

    let (s, f) = admin.get("/api/admin/server").await;
    assert_eq!(s, 200, "{f}");
    assert_eq!(f["version"], env!("CARGO_PKG_VERSION"));
    assert!(f["uptime_secs"].as_u64().is_some(), "{f}");
    assert!(f["connections"].as_u64().is_some_and(|n| n >= 1), "{f}");
    let db = match b {
        Backend::Sqlite => "sqlite",
        Backend::Postgres | Backend::Cluster => "postgres",
        Backend::Mysql => "mysql",
    };
    assert_eq!(f["database"], db);
    assert_eq!(f["bus"], if b == Backend::Cluster { "redis" } else { "local" });
    assert_eq!((f["users"].as_i64(), f["rooms"].as_i64()), (Some(1), Some(1)));
    assert!(f["storage"]["database_bytes"].as_i64().is_some_and(|n| n > 0), "{f}");
    assert_eq!(f["storage"]["files_bytes"], 1234);

    // No background work on a database this version made (once the first start's
    // re-index of its empty database has set its flag, a moment after start)...
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (s, f) = admin.get("/api/admin/server").await;
        assert_eq!(s, 200, "{f}");
        if f["maintenance"] == json!([]) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{f}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // ...but a database from before the search words' re-index shows it, with how
    // many kept events it has passed (in room, seq order), on every node.
    let two = admin.create_room("two", json!({})).await;
    ws.say(room, "first").await;
    ws.say(room, "second").await;
    ws.say(two, "third").await;
    let mut kept = vec![];
    for r in [room, two] {
        let (s, body) = admin.get(&format!("/api/rooms/{r}")).await;
        assert_eq!(s, 200, "{body}");
        kept.push(body["room"]["last_seq"].as_i64().expect("last_seq"));
    }
    assert!(kept[0] >= 2 && kept[1] >= 1, "{kept:?}");
    let job = |done: i64| json!([{"job": "search_reindex", "done": done, "total": kept[0] + kept[1]}]);
    srv.pending_search_reindex().await;
    for _ in 0..2 {
        // (On a cluster, successive clients go to alternate nodes.)
        let mut root = srv.client();
        assert_eq!(root.login("root", &password_of("root")).await.0, 200);
        let (_, f) = root.get("/api/admin/server").await;
        assert_eq!(f["maintenance"], job(0), "{f}");
    }
    // The re-index's cursor past room one's messages.
    let store = srv.state.chat.store().clone();
    store.set_setting("search_words_cursor", &format!("{room}:{}", i64::MAX)).await.expect("cursor");
    let (_, f) = admin.get("/api/admin/server").await;
    assert_eq!(f["maintenance"], job(kept[0]), "{f}");
    // Inside a room: its events up to the cursor's seq (seqs run from 1, none trimmed),
    // and then those of room two, after room one in key order.
    store.set_setting("search_words_cursor", &format!("{room}:2")).await.expect("cursor");
    let (_, f) = admin.get("/api/admin/server").await;
    assert_eq!(f["maintenance"], job(2), "{f}");
    store.set_setting("search_words_cursor", &format!("{two}:1")).await.expect("cursor");
    let (_, f) = admin.get("/api/admin/server").await;
    assert_eq!(f["maintenance"], job(kept[0] + 1), "{f}");
}

// 9. The audit log: every action, newest first, paged, pruned.
async fn audit_entries_and_retention(b: Backend) {
    let srv = TestServer::start(b).await;
    let (admin, bob) = admin_and(&srv, "bob").await;
    let bob_id = bob.id().await;
    no_content(&admin.put("/api/admin/registration", json!({"mode": "invite"})).await);
    assert_eq!(admin.post("/api/admin/invites", json!({})).await.0, 201);
    let carol = json!({"first_name": "C", "last_name": "D", "email": "carol@example.org", "username": "carol", "password": password_of("carol")});
    assert_eq!(admin.post("/api/admin/users", carol).await.0, 201);
    no_content(&admin.post(&format!("/api/admin/users/{bob_id}/disable"), json!({})).await);
    no_content(&admin.post(&format!("/api/admin/users/{bob_id}/enable"), json!({})).await);

    let log = audit(&admin).await;
    let actions: Vec<&str> = log.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, ["user.enable", "user.disable", "user.add", "invite.create", "settings.registration"]);
    assert_eq!(entry(&log, "settings.registration")["detail"]["mode"], "invite");
    assert_eq!(entry(&log, "user.add")["target"], "carol");
    assert_eq!(entry(&log, "user.disable")["target"], "bob");
    for e in &log {
        assert_eq!(e["actor"]["username"], "root", "{e}");
        assert!(e["ts"].as_i64().is_some_and(|t| t > 0) && e["id"].as_i64().is_some(), "{e}");
    }
    // Paging: `before` an id gives the older ones.
    let (_, first) = admin.get("/api/admin/audit?limit=2").await;
    let first = first["entries"].as_array().expect("entries").clone();
    assert_eq!(first.len(), 2);
    let last_id = first[1]["id"].as_i64().expect("id");
    let (_, rest) = admin.get(&format!("/api/admin/audit?before={last_id}&limit=10")).await;
    let rest: Vec<&str> =
        rest["entries"].as_array().expect("entries").iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(rest, ["user.add", "invite.create", "settings.registration"]);

    // Retention: an entry older than --audit-keep-days (365) goes at the next prune.
    let store = srv.state.chat.store();
    let old = rtm::chat::now_ms() - 400 * 86_400_000;
    store
        .append_audit(rtm::store::NewAudit {
            ts: old,
            actor: None,
            action: "user.promote".into(),
            target: "ancient".into(),
            detail: "{}".into(),
        })
        .await
        .expect("append");
    assert!(audit(&admin).await.iter().any(|e| e["target"] == "ancient"));
    srv.state.chat.prune().await.expect("prune");
    let after = audit(&admin).await;
    assert!(!after.iter().any(|e| e["target"] == "ancient"), "{after:?}");
    assert_eq!(after.len(), 5, "recent entries stay");
}

// 10. Everyone but an admin gets 403 on every endpoint (and no sign-in, 401).
async fn non_admins_are_refused(b: Backend) {
    let srv = TestServer::start(b).await;
    let (admin, bob) = admin_and(&srv, "bob").await;
    let room = admin.create_room("lobby", json!({})).await;
    let id = admin.id().await;
    let gets = [
        "/api/admin/users".to_string(),
        "/api/admin/rooms".into(),
        "/api/admin/server".into(),
        "/api/admin/audit".into(),
    ];
    let posts = [
        format!("/api/admin/users/{id}/promote"),
        format!("/api/admin/users/{id}/demote"),
        format!("/api/admin/users/{id}/reset-link"),
        format!("/api/admin/users/{id}/disable"),
        format!("/api/admin/users/{id}/enable"),
        format!("/api/admin/rooms/{room}/archive"),
        format!("/api/admin/rooms/{room}/unarchive"),
        "/api/admin/invites".into(),
    ];
    let deletes = [format!("/api/admin/users/{id}/sessions"), format!("/api/admin/rooms/{room}")];
    let anon = srv.client();
    for p in &gets {
        assert_error(&bob.get(p).await, 403, "forbidden");
        assert_error(&anon.get(p).await, 401, "unauthenticated");
    }
    for p in &posts {
        assert_error(&bob.post(p, json!({})).await, 403, "forbidden");
        assert_error(&anon.post(p, json!({})).await, 401, "unauthenticated");
    }
    for p in &deletes {
        assert_error(&bob.delete(p).await, 403, "forbidden");
        assert_error(&anon.delete(p).await, 401, "unauthenticated");
    }
    assert_error(&bob.put("/api/admin/registration", json!({"mode": "open"})).await, 403, "forbidden");
    // Nothing happened, and nothing was recorded.
    assert_eq!(admin.me().await["is_admin"], true);
    assert!(audit(&admin).await.is_empty());
    let (_, rooms) = admin.get("/api/admin/rooms").await;
    assert_eq!(rooms["total"], 1);
}

on_both_backends!(
    users_listing,
    promote_demote_last_admin,
    last_admin_races,
    reset_link_single_use,
    end_sessions,
    rooms_listing,
    archive_blocks_sends,
    delete_room,
    server_facts,
    audit_entries_and_retention,
    non_admins_are_refused,
);
