//! `rtm backup PATH` on a live SQLite server, and the restore procedure of
//! docs/DEPLOY.md ("Backups"), end to end: a client keeps writing messages through the
//! running server while the real `rtm` binary takes the backup; the copy is restored
//! into a fresh data dir, a server is started on it, and every message acknowledged
//! before the backup started is there, in order, once, with its text.

mod common;

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use common::*;
use rtm::ws::protocol::ServerFrame;
use serde_json::{Value, json};

/// Runs `rtm --data-dir DIR backup DEST` (no `RTM_*` from the caller's environment).
async fn rtm_backup(dir: &Path, dest: &Path) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_rtm"));
    for (k, _) in std::env::vars() {
        if k.starts_with("RTM_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("RTM_LOG", "warn").arg("--data-dir").arg(dir).arg("backup").arg(dest);
    cmd.output().await.expect("rtm runs")
}

/// Every kept event of `room`, oldest first, read page by page over HTTP.
async fn all_events(c: &Client, room: i64) -> Vec<Value> {
    let mut events: Vec<Value> = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let q = before.map(|b| format!("&before={b}")).unwrap_or_default();
        let (s, body) = c.get(&format!("/api/rooms/{room}/messages?limit=100{q}")).await;
        assert_eq!(s, 200, "{body}");
        let page = body["events"].as_array().cloned().unwrap_or_default();
        if page.is_empty() {
            break;
        }
        before = page[0]["seq"].as_i64();
        let mut all = page;
        all.append(&mut events);
        events = all;
        if body["more"] != json!(true) {
            break;
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_writing_restores_everything_acknowledged_before_it() {
    let srv = TestServer::start_with(Backend::Sqlite, |c| c.rate_messages_per_10s = 1_000_000).await;
    let ann = srv.user("ann").await;
    let room = ann.create_room("journal", json!({ "retention": { "keep_messages": 1_000_000 } })).await;

    // The writer: one message after another, each acknowledged (seq) before the next,
    // with the moment its ack arrived.
    let stop = Arc::new(AtomicBool::new(false));
    let mut ws = ann.ws().await;
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut acked: Vec<(Instant, i64, String)> = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let text = format!("entry {i}: {}", "x".repeat((i % 200) as usize + 1));
                let seq = ws.say(room, &text).await.expect("a kept room acks with a seq");
                acked.push((Instant::now(), seq, text));
                i += 1;
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // The backup, mid-stream, by the real binary, while the server runs and writes.
    let out_dir = tempfile::tempdir().expect("tempdir");
    let dest = out_dir.path().join("rtm-backup.db");
    let backup_started = Instant::now();
    let out = rtm_backup(srv.dir.path(), &dest).await;
    let backup_done = Instant::now();
    assert!(out.status.success(), "rtm backup failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("backed up to"), "{out:?}");
    // It holds password hashes: its owner's alone.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dest).expect("the copy").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = writer.await.expect("writer");
    let before: Vec<&(Instant, i64, String)> = acked.iter().filter(|(t, _, _)| *t < backup_started).collect();
    let during = acked.iter().filter(|(t, _, _)| *t >= backup_started && *t <= backup_done).count();
    let after = acked.iter().filter(|(t, _, _)| *t > backup_done).count();
    assert!(before.len() >= 50, "enough written before the backup: {}", before.len());
    assert!(after > 0, "the server kept writing after the backup");
    eprintln!(
        "acked before the backup {}, during it {during} ({} ms), after {after}",
        before.len(),
        (backup_done - backup_started).as_millis()
    );
    // A second backup to the same path is refused: it never overwrites.
    let again = rtm_backup(srv.dir.path(), &dest).await;
    assert!(!again.status.success(), "a backup over an existing file must be refused");
    let (_config, _dir) = srv.stop().await;

    // The copy is sound on its own.
    {
        use sqlx::{Connection, Executor};
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&format!("sqlite:{}?mode=ro", dest.display())).await.expect("open");
        let verdict: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&mut conn).await.expect("check");
        assert_eq!(verdict, "ok");
        conn.execute("SELECT 1").await.expect("query");
    }

    // Restore (docs/DEPLOY.md): the copy becomes rtm.db of a fresh data dir (no -wal or
    // -shm beside it), and a server starts on it.
    let restored_dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(&dest, restored_dir.path().join("rtm.db")).expect("copy");
    let mut config = rtm::Config::for_tests(restored_dir.path().to_path_buf());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.hash_concurrency = 2;
    let restored = TestServer::start_config(Backend::Sqlite, config, restored_dir).await;
    let mut ann = restored.client();
    let (s, body) = ann.login("ann", &password_of("ann")).await;
    assert_eq!(s, 200, "the account is in the backup: {body}");

    let events = all_events(&ann, room).await;
    let messages: Vec<(i64, String)> = events
        .iter()
        .filter(|e| e["kind"] == "text")
        .map(|e| (e["seq"].as_i64().expect("seq"), e["text"].as_str().expect("text").to_string()))
        .collect();
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().expect("seq")).collect();
    eprintln!("restored events: {} (seqs {:?}..{:?})", events.len(), seqs.first(), seqs.last());
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seqs only grow, each once");
    // Every message acknowledged before the backup started, with its seq and text.
    let kept: std::collections::HashMap<i64, &str> = messages.iter().map(|(s, t)| (*s, t.as_str())).collect();
    for (_, seq, text) in &before {
        assert_eq!(
            kept.get(seq).copied(),
            Some(text.as_str()),
            "acked seq {seq} before the backup is missing or changed"
        );
    }
    // Nothing that was never acknowledged, and no more than was written.
    let all_acked: std::collections::HashMap<i64, &str> = acked.iter().map(|(_, s, t)| (*s, t.as_str())).collect();
    for (seq, text) in &messages {
        assert_eq!(all_acked.get(seq).copied(), Some(text.as_str()), "seq {seq} in the copy was never acked as such");
    }
    eprintln!("restored {} messages of {} acked in all", messages.len(), acked.len());

    // The restored server carries on from where the copy ends (a client id of its
    // own: `say`'s ids start over per socket, and a repeated one is acked with the
    // first seq, as it should be).
    let last = seqs.last().copied().expect("events");
    let mut ws = ann.ws().await;
    let ack = ws
        .request(json!({"type": "send", "room": room, "client_id": "after-restore", "text": "after the restore"}))
        .await;
    assert!(matches!(ack, ServerFrame::Ack { seq: Some(s), .. } if s == last + 1), "{ack:?}");
}
