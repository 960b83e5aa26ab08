//! The real `rtm` binary's admin commands and help, on SQLite in a temp data dir.

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

    let out = ok(&rtm(Some(d), ADD_ADMIN1, Some("cli-password-1\n")));
    assert!(out.contains("created user admin1"), "{out}");
    assert!(out.contains(", admin"), "the first account is the admin: {out}");

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
    assert!(out.contains("user"), "the user command is listed:\n{out}");

    let out = ok(&rtm(None, &["user", "--help"], None));
    for cmd in ["add", "list", "disable", "enable", "token"] {
        assert!(out.contains(cmd), "{cmd} missing in:\n{out}");
    }
    let out = ok(&rtm(None, &["--version"], None));
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
    let bad = rtm(None, &["--no-such-flag"], None);
    assert!(!bad.status.success());
}
