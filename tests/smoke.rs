mod common;
use common::*;
use rtm::ws::protocol::ServerFrame;
use serde_json::json;

async fn two_users_chat(b: Backend) {
    let srv = TestServer::start(b).await;
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let room = ann.create_room("general", json!({})).await;
    let (s, body) = bob
        .post(&format!("/api/rooms/{room}/join"), json!({}))
        .await;
    assert_eq!(s, 200, "{body}");
    let mut wa = ann.ws().await;
    let mut wb = bob.ws().await;
    let seq = wa.say(room, "hello bob").await;
    assert!(seq.is_some());
    let (f, _) = wb
        .recv_until(|f| matches!(f, ServerFrame::Message(_)))
        .await;
    let ServerFrame::Message(e) = f else {
        unreachable!()
    };
    assert_eq!(e.text, "hello bob");
    assert_eq!(e.seq, seq);
}

on_both_backends!(two_users_chat);
