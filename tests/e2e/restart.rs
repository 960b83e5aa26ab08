//! The server restarts in the middle of a conversation: both browsers show that they
//! are reconnecting, a message typed meanwhile waits as pending, and after the restart
//! (same port, same data) both reconnect on their own and resume. Every message sent
//! just before, during and after the restart is shown exactly once, in both browsers
//! and after a reload (so it was stored once, too). Signing out while the server is
//! away asks about the queued message, then says the session could not end.

use std::time::Duration;

use anyhow::{Result, ensure};
use serde_json::json;

use crate::{
    browser::{Browser, Driver},
    common::{Backend, TestServer, password_of},
};

/// Generous: the client's backoff may be a few seconds into its next wait.
const RECONNECT_WAIT: Duration = Duration::from_secs(40);

/// The seqs of the message rows, in screen order, must only grow (no duplicates, no
/// reordering).
async fn seqs_increase(b: &Browser) -> Result<()> {
    let v = b
        .js(
            "return [...document.querySelectorAll('#messages .msg[data-seq], #messages .notice[data-seq]')]
                 .map((m) => Number(m.dataset.seq));",
            vec![],
        )
        .await?;
    let seqs: Vec<i64> = v.as_array().map(|a| a.iter().filter_map(|x| x.as_i64()).collect()).unwrap_or_default();
    ensure!(seqs.windows(2).all(|w| w[0] < w[1]), "{}: seqs on screen must strictly grow: {seqs:?}", b.name);
    Ok(())
}

async fn wait_reconnecting(b: &Browser) -> Result<()> {
    b.wait_js(
        "#conn-state to say reconnecting",
        "const el = document.getElementById('conn-state');
         return el.dataset.state === 'reconnecting' && /^reconnecting in \\d+ s$/.test(el.textContent.trim());",
        vec![],
    )
    .await
    .map(|_| ())
}

pub async fn server_restart(d: &Driver) -> Result<()> {
    let srv = TestServer::start(Backend::Sqlite).await;
    let carol_api = srv.user("carol").await;
    let dave_api = srv.user("dave").await;
    let room = carol_api.create_room("ops", json!({ "topic": "Keeping the lights on" })).await;
    let (s, body) = dave_api.post(&format!("/api/rooms/{room}/join"), json!({})).await;
    ensure!(s == 200, "dave joins: {body}");

    let home = srv.url("/");
    let carol = d.browser("carol").await?;
    let dave = d.browser("dave").await?;
    for (b, who) in [(&carol, "carol"), (&dave, "dave")] {
        b.goto(&home).await?;
        b.sign_in(who, &password_of(who)).await?;
        b.open_conversation("ops").await?;
    }
    carol.send_message("before the restart").await?;
    dave.wait_msg("before the restart").await?;
    carol.wait_msg_delivered("before the restart").await?;

    // Dave sends while the server goes down: whether the server took it, stored it,
    // acknowledged it or none of these before stopping, it must end up shown exactly
    // once.
    let (sent, (config, dir)) = tokio::join!(dave.send_message("sent just before the restart"), srv.stop());
    sent?;
    wait_reconnecting(&carol).await?;
    wait_reconnecting(&dave).await?;
    carol.wait_visible("#reconnect-now").await?;
    // Away from the server, whether others are online is not known: none is shown so.
    carol
        .wait_js(
            "nobody shown online while reconnecting",
            "return document.getElementById('member-count').textContent.endsWith(', 0 online)');",
            vec![],
        )
        .await?;

    // Typed while the server is down: pending, and the composer says why.
    carol.send_message("typed while the server was down").await?;
    let m = carol.wait_msg("typed while the server was down").await?;
    ensure!(m["pending"] == json!(true) && m["status"] == json!("sending…"), "shown as pending: {m}");
    let status = carol.text("#composer-status").await?;
    ensure!(status.starts_with("Offline"), "the composer explains the offline queue: {status:?}");

    // Signing out now would lose the queued message: carol is asked first. And with the
    // server away the session cannot end: she stays signed in and is told so (it
    // said "You are signed out." while the session lived on).
    carol.click("#logout").await?;
    carol.wait_visible("#confirm-ok").await?;
    let q = carol.text("#confirm-text").await?;
    ensure!(q.contains("1 message has not been sent yet"), "the question: {q}");
    carol.click("#confirm-ok").await?;
    carol
        .wait_text(
            "#toast",
            "You are still signed in: the server cannot be reached. Try again when the connection is back.",
        )
        .await?;
    ensure!(!carol.is_visible("#login-form").await?, "still in the app");

    // Same port, same data.
    let srv = TestServer::start_config(Backend::Sqlite, config, dir).await;
    carol.wait_live_for(RECONNECT_WAIT).await?;
    dave.wait_live_for(RECONNECT_WAIT).await?;
    carol.wait_text("#composer-status", "").await?;

    for b in [&carol, &dave] {
        b.wait_msg_delivered("sent just before the restart").await?;
        b.wait_msg_delivered("typed while the server was down").await?;
    }
    carol.send_message("after the restart (carol)").await?;
    dave.send_message("after the restart (dave)").await?;
    for b in [&carol, &dave] {
        b.wait_msg_delivered("after the restart (carol)").await?;
        b.wait_msg_delivered("after the restart (dave)").await?;
    }

    let all = [
        "before the restart",
        "sent just before the restart",
        "typed while the server was down",
        "after the restart (carol)",
        "after the restart (dave)",
    ];
    for b in [&carol, &dave] {
        for text in all {
            ensure!(b.msg_count(text).await? == 1, "{}: {text:?} must be shown exactly once", b.name);
        }
        seqs_increase(b).await?;
    }

    // What the server kept: a reload shows each once, too.
    dave.c.refresh().await?;
    dave.wait_live().await?;
    dave.wait_room_open("ops").await?;
    for text in all {
        dave.wait_msg_delivered(text).await?;
        ensure!(dave.msg_count(text).await? == 1, "after a reload, {text:?} must be shown exactly once");
    }
    seqs_increase(&dave).await?;

    carol.close(d).await?;
    dave.close(d).await?;
    drop(srv);
    Ok(())
}
