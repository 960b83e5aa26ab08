//! Shutdown as a protocol: WebSocket clients hear `server_shutdown` at once, even while
//! an HTTP request is stuck in its body, and the whole shutdown ends within the grace
//! period (one deadline for everything, not one per phase), and every socket hears it
//! even in the middle of a fan-out.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rtm::ws::protocol::ServerFrame;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_hear_at_once_and_shutdown_keeps_to_the_grace_period() {
    let srv = TestServer::start_with(Backend::Sqlite, |c| c.shutdown_grace_secs = 3).await;
    let ann = srv.user("ann").await;
    let mut ws = ann.ws().await;
    // A client that sent a request head and stalls in its body.
    let mut stalled = tokio::net::TcpStream::connect(srv.addr).await.expect("connect");
    let head = format!(
        "POST /api/login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
        srv.addr
    );
    stalled.write_all(head.as_bytes()).await.expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    let stopping = tokio::spawn(srv.stop());
    let (f, _) = ws.recv_until(|f| matches!(f, ServerFrame::Closing { .. })).await;
    let heard = started.elapsed();
    assert!(matches!(f, ServerFrame::Closing { code, .. } if code == "server_shutdown"));
    // Before this fix the stalled request held the news back for the whole grace period.
    assert!(heard < Duration::from_secs(2), "WebSocket told after {heard:?}");
    let _ = stopping.await;
    let total = started.elapsed();
    assert!(total < Duration::from_secs(3 + 2), "shutdown took {total:?} with a 3 s grace period");
    drop(stalled);
}

/// Every socket hears `closing` even while messages are being fanned out to it. A
/// fan-out queues a frame to every member and writes afterwards; a goodbye that shut
/// the socket while a frame was queued that way lost itself with that frame, and the
/// client saw the socket end with no reason (a CI run of the nginx rolling restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_socket_hears_closing_in_the_middle_of_a_fan_out() {
    use futures_util::{SinkExt, StreamExt};
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };

    let srv = TestServer::start_with(Backend::Sqlite, |c| {
        c.shutdown_grace_secs = 3;
        // The fan-out must run until the stop: no sender's rate limit in the way.
        c.rate_messages_per_10s = 1_000_000;
    })
    .await;
    let owner = srv.user("owner").await;
    let room = owner.create_room("busy", serde_json::json!({})).await;
    let mut members = vec![];
    for i in 0..24 {
        let c = srv.user(&format!("member{i}")).await;
        let (s, body) = c.post(&format!("/api/rooms/{room}/join"), serde_json::json!({})).await;
        assert!(s == 200 || s == 204, "join: {s} {body}");
        members.push(c.ws().await);
    }
    // The owner sends without waiting for acks, until the server goes; a reader keeps
    // the owner's own socket drained.
    let (mut tx, mut rx) = owner.ws().await.stream.split();
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = rx.next().await {} });
    let stop = Arc::new(AtomicBool::new(false));
    let sender = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let f = serde_json::json!({"type": "send", "id": format!("s{n}"), "room": room,
                    "client_id": format!("c{n}"), "text": format!("busy {n}")});
                let msg = tokio_tungstenite::tungstenite::Message::Text(f.to_string().into());
                if tx.send(msg).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            n
        }
    });
    // Every member has heard some of it before the stop, and it runs on for a while.
    for ws in &mut members {
        ws.recv_until(|f| matches!(f, ServerFrame::Message(_))).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stopping = tokio::spawn(srv.stop());
    let mut quiet = vec![];
    for (i, ws) in members.iter_mut().enumerate() {
        let mut messages = 0;
        let heard = loop {
            match ws.try_recv(WAIT).await {
                Some(ServerFrame::Closing { code, .. }) => break Some(code),
                Some(ServerFrame::Message(_)) => messages += 1,
                Some(_) => {}
                None => break None,
            }
        };
        if heard.as_deref() != Some("server_shutdown") {
            quiet.push((i, heard, messages));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let sent = sender.await.expect("sender");
    let _ = stopping.await;
    reader.abort();
    assert!(sent > 10, "the fan-out was running: {sent} sent");
    assert!(
        quiet.is_empty(),
        "sockets that ended without `closing: server_shutdown` (member, closing, messages after the stop): {quiet:?}"
    );
}
