//! Shutdown as a protocol: WebSocket clients hear `server_shutdown` at once, even while
//! an HTTP request is stuck in its body, and the whole shutdown ends within the grace
//! period (one deadline for everything, not one per phase).

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
