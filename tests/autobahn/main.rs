//! The test-only echo route (`--test-echo-route`, `ws::session::echo`) that the
//! Autobahn run (tests/autobahn/run.sh) talks to: absent from a normal server and from
//! `--help`; with the flag, it echoes text and binary messages and breaks off with the
//! production close codes and limits (1009 past `--max-frame-bytes`, 1007 for invalid
//! UTF-8), with no chat `closing` frame before the Close.

#[path = "../common/mod.rs"]
mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{
    self, Message,
    protocol::frame::{
        Frame,
        coding::{CloseCode, Data, OpCode},
    },
};

const MAX: usize = 4096;

type Stream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn echo(srv: &TestServer) -> Stream {
    let (ws, resp) =
        tokio_tungstenite::connect_async(format!("ws://{}/test-echo", srv.addr)).await.expect("echo handshake");
    assert_eq!(resp.status().as_u16(), 101);
    ws
}

async fn next(ws: &mut Stream) -> Message {
    match tokio::time::timeout(WAIT, ws.next()).await {
        Ok(Some(Ok(m))) => m,
        other => panic!("no message: {other:?}"),
    }
}

/// The server's Close code, and that nothing but the Close came first.
async fn close_code(ws: &mut Stream) -> CloseCode {
    match next(ws).await {
        Message::Close(Some(f)) => f.code,
        other => panic!("expected a Close frame first, got {other:?}"),
    }
}

#[tokio::test]
async fn a_normal_server_has_no_echo_route() {
    assert!(!rtm::Config::for_tests("/tmp/x".into()).test_echo_route, "off by default");
    let srv = TestServer::start(Backend::Sqlite).await;
    match tokio_tungstenite::connect_async(format!("ws://{}/test-echo", srv.addr)).await {
        // The web client's fallback page: a plain 200, never an upgrade.
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 200),
        Err(e) => panic!("unexpected handshake error {e}"),
        Ok(_) => panic!("the echo route answered on a normal server"),
    }
    // Nor does the help text offer it.
    let help =
        std::process::Command::new(env!("CARGO_BIN_EXE_rtm")).args(["serve", "--help"]).output().expect("rtm runs");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--max-frame-bytes"), "{help}");
    assert!(!help.contains("echo"), "{help}");
}

#[tokio::test]
async fn with_the_flag_it_echoes_under_the_production_limits() {
    let srv = TestServer::start_with(Backend::Sqlite, |c| {
        c.test_echo_route = true;
        c.max_frame_bytes = MAX;
    })
    .await;

    let mut ws = echo(&srv).await;
    // No hello, no chat: the first thing back is the echo.
    ws.send(Message::text("héllo")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("héllo"));
    let bytes: Vec<u8> = (0..=255).collect();
    ws.send(Message::binary(bytes.clone())).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::binary(bytes));
    ws.send(Message::Ping("p".into())).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::Pong("p".into()));
    // As large as the limit: echoed whole.
    let full = "x".repeat(MAX);
    ws.send(Message::text(full.clone())).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text(full));
    ws.close(None).await.unwrap();
    assert!(matches!(next(&mut ws).await, Message::Close(_)));

    // One byte over: 1009, as on /ws.
    let mut ws = echo(&srv).await;
    ws.send(Message::text("y".repeat(MAX + 1))).await.unwrap();
    assert_eq!(close_code(&mut ws).await, CloseCode::Size);

    // Invalid UTF-8 in a text message: 1007.
    let mut ws = echo(&srv).await;
    ws.send(Message::Frame(Frame::message(vec![b'a', 0xff, b'b'], OpCode::Data(Data::Text), true))).await.unwrap();
    assert_eq!(close_code(&mut ws).await, CloseCode::Invalid);

    // A continuation with no message begun: 1002.
    let mut ws = echo(&srv).await;
    ws.send(Message::Frame(Frame::message(b"z".to_vec(), OpCode::Data(Data::Continue), true))).await.unwrap();
    assert_eq!(close_code(&mut ws).await, CloseCode::Protocol);
}
