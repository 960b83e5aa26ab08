//! The real `rtm` binary's admin commands and help, on SQLite in a temp data dir
//! (the admin console's commands also against a running server).

mod common;

use std::{
    io::Write,
    path::Path,
    process::{Command, Output, Stdio},
};

use common::*;
use serde_json::{Value, json};

/// Runs `rtm --data-dir DIR ARGS...`, with `stdin` written to its standard input and
/// no `RTM_*` variables from the caller's environment.
fn rtm(dir: Option<&Path>, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rtm"));
    for (k, _) in std::env::vars() {
        if k.starts_with("RTM_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("RTM_LOG", "warn");
    if let Some(d) = dir {
        cmd.arg("--data-dir").arg(d);
    }
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("rtm starts");
    {
        let mut input = child.stdin.take().expect("stdin");
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).expect("write stdin");
        }
    }
    child.wait_with_output().expect("rtm finishes")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert!(o.status.success(), "rtm failed ({}): stdout {} stderr {}", o.status, stdout(o), stderr(o));
    stdout(o)
}

/// The `user list` line of `username`.
fn list_line(dir: &Path, username: &str) -> String {
    let out = ok(&rtm(Some(dir), &["user", "list"], None));
    out.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(username))
        .unwrap_or_else(|| panic!("{username} not in the list:\n{out}"))
        .to_string()
}

const ADD_ADMIN1: &[&str] = &[
    "user",
    "add",
    "--email",
    "a@x.org",
    "--username",
    "admin1",
    "--first-name",
    "A",
    "--last-name",
    "B",
    "--password-stdin",
];

#[test]
fn user_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();

    // A mistyped data dir: admin commands refuse rather than answer from a new, empty
    // database (only `user add` and `serve` create one).
    for args in [&["user", "list"][..], &["room", "list"], &["audit"], &["user", "disable", "ann"]] {
        let o = rtm(Some(d), args, None);
        assert!(!o.status.success() && stderr(&o).contains("no database at"), "{args:?}: {}", stderr(&o));
    }
    assert!(!d.join("rtm.db").exists());

    let out = ok(&rtm(Some(d), ADD_ADMIN1, Some("cli-password-1\n")));
    assert!(out.contains("created user admin1"), "{out}");
    assert!(out.contains(", admin"), "the first account is the admin: {out}");
    // A one-shot command does no housekeeping: it makes no files directory (which
    // would belong to whoever ran it) and runs no sweeper.
    assert!(!d.join("files").exists(), "the CLI created {}", d.join("files").display());

    let header = ok(&rtm(Some(d), &["user", "list"], None));
    assert!(header.contains("username") && header.contains("status"), "{header}");
    let line = list_line(d, "admin1");
    assert!(line.contains("a@x.org"), "{line}");
    assert!(line.contains("yes"), "admin column: {line}");
    assert!(line.trim_end().ends_with("active"), "{line}");

    let token = ok(&rtm(Some(d), &["user", "token", "admin1"], None));
    let token = token.trim();
    assert!(token.starts_with("rtm_") && token.len() > 20 && !token.contains(char::is_whitespace), "{token:?}");
    // By email too, and each token is new.
    let token2 = ok(&rtm(Some(d), &["user", "token", "A@X.org"], None));
    assert!(token2.trim().starts_with("rtm_") && token2.trim() != token);
    // Each is in the audit log (its name, never the token itself).
    let audit = ok(&rtm(Some(d), &["audit", "--limit", "5"], None));
    assert_eq!(audit.matches("user.token").count(), 2, "{audit}");
    assert!(!audit.contains(token) && !audit.contains(token2.trim()), "{audit}");

    let out = ok(&rtm(Some(d), &["user", "disable", "admin1"], None));
    assert!(out.contains("disabled admin1"), "{out}");
    assert!(list_line(d, "admin1").trim_end().ends_with("disabled"));
    let out = ok(&rtm(Some(d), &["user", "enable", "ADMIN1"], None));
    assert!(out.contains("enabled admin1"), "{out}");
    assert!(list_line(d, "admin1").trim_end().ends_with("active"));

    // Errors exit non-zero and say why, with the stable code.
    let dup = rtm(
        Some(d),
        &[
            "user",
            "add",
            "--email",
            "other@x.org",
            "--username",
            "Admin1",
            "--first-name",
            "A",
            "--last-name",
            "B",
            "--password-stdin",
        ],
        Some("cli-password-2\n"),
    );
    assert!(!dup.status.success());
    assert!(stderr(&dup).contains("username_taken"), "{}", stderr(&dup));
    let short = rtm(
        Some(d),
        &[
            "user",
            "add",
            "--email",
            "b@x.org",
            "--username",
            "bee",
            "--first-name",
            "A",
            "--last-name",
            "B",
            "--password-stdin",
        ],
        Some("short\n"),
    );
    assert!(!short.status.success());
    assert!(stderr(&short).contains("invalid_password"), "{}", stderr(&short));
    let no_password = rtm(
        Some(d),
        &["user", "add", "--email", "b@x.org", "--username", "bee", "--first-name", "A", "--last-name", "B"],
        None,
    );
    assert!(!no_password.status.success());
    assert!(stderr(&no_password).contains("--password-stdin"));
    let nobody = rtm(Some(d), &["user", "disable", "nobody"], None);
    assert!(!nobody.status.success());
    assert!(stderr(&nobody).contains("nobody"), "{}", stderr(&nobody));
    // Still exactly one account.
    let out = ok(&rtm(Some(d), &["user", "list"], None));
    assert_eq!(out.lines().count(), 2, "{out}");
}

/// What the CLI did is what the server sees: the stdin password signs in, the printed
/// token is a bearer, and a CLI-disabled account is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_accounts_work_on_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_path_buf();
    ok(&rtm(Some(&d), ADD_ADMIN1, Some("cli-password-1\r\n")));
    let token = ok(&rtm(Some(&d), &["user", "token", "admin1"], None)).trim().to_string();

    let mut config = rtm::Config::for_tests(d.clone());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    let srv = TestServer::start_config(Backend::Sqlite, config, dir).await;
    let mut c = srv.client();
    let (s, body) = c.login("admin1", "cli-password-1").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["user"]["is_admin"], true);
    let r = reqwest::Client::new().get(srv.url("/api/me")).bearer_auth(&token).send().await.expect("request");
    assert_eq!(r.status().as_u16(), 200);
    let me: Value = r.json().await.expect("json");
    assert_eq!(me["user"]["username"], "admin1");
    let (s, _) = c.post("/api/logout", json!({})).await;
    assert_eq!(s, 204);
    let (config, dir) = srv.stop().await;

    ok(&rtm(Some(&d), &["user", "disable", "admin1"], None));
    let srv = TestServer::start_config(Backend::Sqlite, config, dir).await;
    let (s, body) = srv.client().login("admin1", "cli-password-1").await;
    assert_eq!(s, 403, "{body}");
    assert_eq!(body["error"]["code"], "account_disabled");
}

#[test]
fn help_lists_flags_and_env() {
    let o = rtm(None, &["--help"], None);
    let out = ok(&o);
    for flag in ["--listen", "--data-dir", "--database", "--public-origin", "--log", "--registration"] {
        assert!(out.contains(flag), "{flag} missing in:\n{out}");
    }
    for env in [
        "[env: RTM_LISTEN=",
        "[env: RTM_DATA_DIR=",
        "[env: RTM_DATABASE=",
        "[env: RTM_PUBLIC_ORIGIN=",
        "[env: RTM_LOG=",
    ] {
        assert!(out.contains(env), "{env} missing in:\n{out}");
    }
    for cmd in ["user", "room", "audit"] {
        assert!(out.contains(cmd), "the {cmd} command is listed:\n{out}");
    }

    let out = ok(&rtm(None, &["user", "--help"], None));
    for cmd in ["add", "list", "disable", "enable", "token", "promote", "demote", "reset-link", "end-sessions"] {
        assert!(out.contains(cmd), "{cmd} missing in:\n{out}");
    }
    let out = ok(&rtm(None, &["room", "--help"], None));
    for cmd in ["list", "archive", "unarchive", "delete"] {
        assert!(out.contains(cmd), "{cmd} missing in:\n{out}");
    }
    let out = ok(&rtm(None, &["audit", "--help"], None));
    assert!(out.contains("--limit"), "{out}");
    let out = ok(&rtm(None, &["--version"], None));
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
    let bad = rtm(None, &["--no-such-flag"], None);
    assert!(!bad.status.success());
}

/// Runs `rtm` on a blocking thread (a server may be running in this test).
async fn rtm_bg(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let (dir, stdin) = (dir.to_path_buf(), stdin.map(str::to_string));
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        rtm(Some(&dir), &args, stdin.as_deref())
    })
    .await
    .expect("rtm thread")
}

/// Sends a text and returns the refusal's code, if refused.
async fn send_code(ws: &mut Ws, room: i64) -> Option<String> {
    let cid = format!("c-{}", ws.new_id());
    match ws.request(json!({"type": "send", "room": room, "client_id": cid, "text": "hello"})).await {
        rtm::ws::protocol::ServerFrame::Ack { .. } => None,
        rtm::ws::protocol::ServerFrame::Error { code, .. } => Some(code),
        other => panic!("unexpected reply {other:?}"),
    }
}

/// Sends until the reply is `want` (a running node applies CLI actions at its next
/// housekeeping tick, every 2 s); panics after 10 s.
async fn until_send_is(ws: &mut Ws, room: i64, want: Option<&str>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = send_code(ws, room).await;
        if got.as_deref() == want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "send still answers {got:?}, want {want:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Reads until the socket gets `closing` `session_ended` (a running node applies
/// the CLI's action at its next housekeeping tick).
async fn expect_closing(ws: &mut Ws) {
    loop {
        match ws.try_recv(WAIT).await {
            Some(rtm::ws::protocol::ServerFrame::Closing { code, .. }) => {
                assert_eq!(code, "session_ended");
                return;
            }
            Some(_) => continue,
            None => panic!("the socket ended, or stayed open, without `closing`"),
        }
    }
}

/// The `rtm room list` line of a room.
async fn room_line(dir: &Path, name: &str) -> Option<String> {
    let out = ok(&rtm_bg(dir, &["room", "list"], None).await);
    out.lines().find(|l| l.split_whitespace().nth(1) == Some(name)).map(str::to_string)
}

/// admin1 and bob added with the CLI to a fresh data dir, then a server started on
/// it; returns the server and the data dir (the server owns the temp dir).
async fn admin1_and_bob_then_serve() -> (TestServer, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_path_buf();
    ok(&rtm_bg(&d, ADD_ADMIN1, Some("cli-password-1\n")).await);
    let add_bob = ["user", "add", "--email", "b@x.org", "--username", "bob", "--first-name", "B", "--last-name", "C"];
    let add_bob: Vec<&str> = add_bob.iter().copied().chain(["--password-stdin"]).collect();
    ok(&rtm_bg(&d, &add_bob, Some("bob-password-1\n")).await);
    let mut config = rtm::Config::for_tests(d.clone());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    (TestServer::start_config(Backend::Sqlite, config, dir).await, d)
}

/// Whether `ws` is still open: it answers a ping with a pong (a `closing` or the end
/// of the socket says it is not).
async fn still_open(ws: &mut Ws) -> bool {
    ws.send_json(json!({"type": "ping", "id": "alive?"})).await;
    loop {
        match ws.try_recv(WAIT).await {
            Some(rtm::ws::protocol::ServerFrame::Pong { id }) if id == "alive?" => return true,
            Some(rtm::ws::protocol::ServerFrame::Closing { .. }) | None => return false,
            Some(_) => continue,
        }
    }
}

/// A running server applies the CLI's `end-sessions` and `demote` at its next
/// housekeeping tick (up to 2 s later). A session signed in within that gap came
/// after the action: its socket stays open, while the older sessions' sockets close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_session_end_spares_sessions_signed_in_since() {
    let (srv, d) = admin1_and_bob_then_serve().await;

    for (command, promote) in [("end-sessions", false), ("demote", true)] {
        if promote {
            ok(&rtm_bg(&d, &["user", "promote", "bob"], None).await);
        }
        let mut before = srv.client();
        assert_eq!(before.login("bob", "bob-password-1").await.0, 200);
        let mut old = before.ws().await;
        ok(&rtm_bg(&d, &["user", command, "bob"], None).await);
        // Signed in again at once: almost always before the server's next tick.
        let mut since = srv.client();
        assert_eq!(since.login("bob", "bob-password-1").await.0, 200);
        let mut new = since.ws().await;
        expect_closing(&mut old).await;
        assert!(still_open(&mut new).await, "{command}: the socket of a session signed in since was closed");
        assert_eq!(since.get("/api/me").await.0, 200, "{command}");
        assert_eq!(before.get("/api/me").await.0, 401, "{command}");
    }
    srv.stop().await;
}

/// The admin commands (`user promote|demote|reset-link|end-sessions`, `room
/// list|archive|unarchive|delete`, `audit`) against the database of a RUNNING
/// server: their effects reach its sockets and caches, and each is in the audit log
/// with no actor (the CLI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_reach_a_running_server() {
    let (srv, d) = admin1_and_bob_then_serve().await;
    let mut bob = srv.client();
    assert_eq!(bob.login("bob", "bob-password-1").await.0, 200);
    let mut admin = srv.client();
    assert_eq!(admin.login("admin1", "cli-password-1").await.0, 200);
    let room = bob.create_room("general", json!({})).await;
    assert_eq!(admin.post(&format!("/api/rooms/{room}/join"), json!({})).await.0, 200);
    let mut ws = bob.ws().await;
    let mut ws_admin = admin.ws().await;

    // room list: owner, member count, state.
    let header = ok(&rtm_bg(&d, &["room", "list"], None).await);
    assert!(header.contains("members") && header.contains("owner"), "{header}");
    let line = room_line(&d, "general").await.expect("general is listed");
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols, [room.to_string().as_str(), "general", "bob", "2", "active"], "{line}");

    // An account added with the CLI joins the default room, and the room's members see
    // its `joined` notice live (the server delivers what the CLI's process could not).
    assert_eq!(admin.put("/api/admin/default-room", json!({"room": room})).await.0, 204);
    let add_carl = ["user", "add", "--email", "c@x.org", "--username", "carl", "--first-name", "C", "--last-name", "D"];
    let add_carl: Vec<&str> = add_carl.iter().copied().chain(["--password-stdin"]).collect();
    ok(&rtm_bg(&d, &add_carl, Some("carl-password-1\n")).await);
    ws.recv_until(|f| {
        matches!(f, rtm::ws::protocol::ServerFrame::Notice(e)
            if e.room == room && e.kind == rtm::ws::protocol::EventKind::Joined && e.text == "carl joined")
    })
    .await;
    assert_eq!(admin.put("/api/admin/default-room", json!({"room": null})).await.0, 204);

    // Archive by name: the running server refuses sends soon after; unarchive by id.
    let out = ok(&rtm_bg(&d, &["room", "archive", "GENERAL"], None).await);
    assert!(out.contains(&format!("archived room {room}")), "{out}");
    assert!(room_line(&d, "general").await.expect("listed").ends_with("archived"));
    // Members' open pages are told, as when the console archives (room_updated).
    let updated = |want: bool| move |f: &rtm::ws::protocol::ServerFrame| matches!(f, rtm::ws::protocol::ServerFrame::RoomUpdated { room: r, archived, .. } if *r == room && *archived == want);
    ws.recv_until(updated(true)).await;
    until_send_is(&mut ws, room, Some("room_archived")).await;
    ok(&rtm_bg(&d, &["room", "unarchive", &room.to_string()], None).await);
    ws.recv_until(updated(false)).await;
    until_send_is(&mut ws, room, None).await;

    // End sessions: bob's socket closes, his cookie stops working.
    let out = ok(&rtm_bg(&d, &["user", "end-sessions", "bob"], None).await);
    assert!(out.contains("ended every session of bob"), "{out}");
    expect_closing(&mut ws).await;
    assert_eq!(bob.get("/api/me").await.0, 401);

    // Promote and demote; the last admin stays.
    assert_eq!(bob.login("bob", "bob-password-1").await.0, 200);
    let mut ws = bob.ws().await;
    ok(&rtm_bg(&d, &["user", "promote", "bob"], None).await);
    assert!(list_line(&d, "bob").contains("yes"));
    assert_eq!(bob.get("/api/admin/users").await.0, 200, "bob is an admin at once");
    // A demotion ends the account's sessions (no socket keeps admin powers).
    ok(&rtm_bg(&d, &["user", "demote", "b@x.org"], None).await);
    assert_eq!(bob.get("/api/admin/users").await.0, 401);
    expect_closing(&mut ws).await;
    assert!(list_line(&d, "bob").split_whitespace().nth(3) != Some("yes"));
    let last = rtm_bg(&d, &["user", "demote", "admin1"], None).await;
    assert!(!last.status.success());
    assert!(stderr(&last).contains("last_admin"), "{}", stderr(&last));

    // A reset link printed by the CLI works once in the browser's endpoint.
    // (The CLI builds the URL from its own config, as the server does.)
    let origin = srv.origin();
    let out = ok(&rtm_bg(&d, &["--public-origin", &origin, "user", "reset-link", "bob"], None).await);
    let url = out.trim();
    let code = url.split("/?reset=").nth(1).expect("a reset URL");
    assert!(url.starts_with(&format!("{origin}/?reset=")), "{url}");
    let (s, _) = srv.client().post("/api/password-reset", json!({"code": code, "password": "bob-password-2"})).await;
    assert_eq!(s, 204);
    assert_eq!(srv.client().login("bob", "bob-password-2").await.0, 200);
    let (s, b) = srv.client().post("/api/password-reset", json!({"code": code, "password": "bob-password-3"})).await;
    assert_eq!((s, b["error"]["code"].as_str()), (400, Some("invalid_reset_code")));

    // Delete: the admin's open socket gets room_left; the room is gone.
    ok(&rtm_bg(&d, &["room", "delete", "general"], None).await);
    let (f, _) = ws_admin.recv_until(|f| matches!(f, rtm::ws::protocol::ServerFrame::RoomLeft { .. })).await;
    assert!(matches!(f, rtm::ws::protocol::ServerFrame::RoomLeft { room: r } if r == room), "{f:?}");
    assert_eq!(admin.get(&format!("/api/rooms/{room}")).await.0, 404);
    assert!(room_line(&d, "general").await.is_none());

    // A CLI command run with the server's flags leaves the stored registration mode
    // alone (`--registration` is the server's start-up choice).
    let url = format!("sqlite:{}", d.join("rtm.db").display());
    let store = rtm::store::connect_with(&url, 2, rtm::store::sqlite::Durability::Normal).await.expect("store");
    let before = store.get_setting("registration_mode").await.expect("setting");
    assert_ne!(before.as_deref(), Some("closed"));
    ok(&rtm_bg(&d, &["--registration", "closed", "user", "list"], None).await);
    assert_eq!(store.get_setting("registration_mode").await.expect("setting"), before);

    // Errors name what was not found and exit non-zero, in one line even where the
    // shell asks Rust for backtraces.
    let traced = Command::new(env!("CARGO_BIN_EXE_rtm"))
        .env("RUST_BACKTRACE", "1")
        .env("RTM_LOG", "warn")
        .args(["--data-dir", d.to_str().expect("utf-8 path"), "user", "promote", "nobody"])
        .output()
        .expect("rtm runs");
    assert!(!traced.status.success());
    let err = stderr(&traced);
    assert!(err.starts_with("Error: ") && err.contains("nobody") && !err.to_lowercase().contains("backtrace"), "{err}");
    let bad = rtm_bg(&d, &["room", "archive", "nosuch"], None).await;
    assert!(!bad.status.success() && stderr(&bad).contains("nosuch"), "{}", stderr(&bad));
    let bad = rtm_bg(&d, &["user", "promote", "nobody"], None).await;
    assert!(!bad.status.success() && stderr(&bad).contains("nobody"), "{}", stderr(&bad));

    // The audit log: every CLI action, newest first, actor "(cli)"; the console sees
    // the same entries with a null actor.
    let out = ok(&rtm_bg(&d, &["audit", "--limit", "50"], None).await);
    let actions: Vec<&str> = out.lines().skip(1).filter_map(|l| l.split_whitespace().nth(8)).collect();
    assert_eq!(
        actions,
        [
            "room.delete",
            "user.password_reset",
            "user.reset_link",
            "user.demote",
            "user.promote",
            "user.end_sessions",
            "room.unarchive",
            "room.archive",
            "settings.default_room",
            "user.add",
            "settings.default_room",
            "user.add",
            "user.add"
        ],
        "{out}"
    );
    let (_, log) = admin.get("/api/admin/audit").await;
    let entries = log["entries"].as_array().expect("entries");
    let by_console = ["user.password_reset", "settings.default_room"];
    let cli: Vec<&Value> =
        entries.iter().filter(|e| !by_console.contains(&e["action"].as_str().unwrap_or(""))).collect();
    assert!(cli.iter().all(|e| e["actor"].is_null()), "{log}");
    assert_eq!(entries[0]["target"], "general");
    assert_eq!(entries.last().expect("first entry")["target"], "admin1");
    let out = ok(&rtm_bg(&d, &["audit", "--limit", "1"], None).await);
    assert_eq!(out.lines().count(), 2, "{out}");
    srv.stop().await;
}
