//! RFC 6455 close codes for protocol violations, over raw TCP: a client that breaks
//! the protocol and keeps writing still reads the `closing` frame and a Close frame
//! with the right code (1009 message too big, 1007 invalid UTF-8, 1002 protocol
//! error), then a clean EOF: no TCP reset destroys the goodbye (docs/PROTOCOL.md §3.6).
//!
//! Each case runs `ROUNDS` times in a row: the reset was a race (27 of 40 oversized
//! messages ended in a reset before the fix), so one pass would prove little.

mod common;

use std::time::Duration;

use common::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::watch,
};

/// `--max-frame-bytes` for these servers.
const MAX: usize = 4096;
const ROUNDS: usize = 40;
/// One round: handshake, violation, goodbye, EOF.
const ROUND_WAIT: Duration = Duration::from_secs(5);
/// How much a client writes after its violation: at least `GARBAGE_MIN` (whether or
/// not the Close frame has come: a client sending a large message writes all of it
/// before it reads), then on until the Close frame arrives, at most `GARBAGE_BUDGET`.
const GARBAGE_MIN: usize = 256 * 1024;
const GARBAGE_BUDGET: usize = 1 << 20;
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A client frame: `first` is the first byte (FIN, RSV bits, opcode); masked unless
/// told otherwise. Any payload length (7-, 16- or 64-bit).
fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut f = vec![first];
    let m = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(m | n as u8),
        n if n <= 0xffff => {
            f.push(m | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(m | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        f.extend_from_slice(&MASK);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

fn ping_command() -> Vec<u8> {
    frame(0x81, br#"{"type":"ping","id":"after"}"#, true)
}

/// One protocol violation and what the client keeps writing after it.
struct Case {
    /// The bytes that break the protocol.
    opening: Vec<u8>,
    /// Written again and again after the opening (see `GARBAGE_MIN`).
    garbage: Vec<u8>,
    /// The WebSocket close code and the `closing` code the server must send.
    close: u16,
    code: &'static str,
}

/// What the client read from the server.
#[derive(Debug, Default)]
struct Seen {
    texts: Vec<String>,
    close: Option<(u16, String)>,
    /// Frames after the Close frame (there must be none).
    after_close: usize,
}

/// Parses the complete server frames at the start of `buf` (server frames are never
/// masked) and removes them.
fn parse(buf: &mut Vec<u8>, seen: &mut Seen) {
    loop {
        if buf.len() < 2 {
            return;
        }
        let op = buf[0] & 0x0f;
        assert_eq!(buf[1] & 0x80, 0, "a server frame is never masked");
        let (len, at) = match buf[1] & 0x7f {
            126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
            127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize, 10),
            126 | 127 => return,
            n => (n as usize, 2),
        };
        if buf.len() < at + len {
            return;
        }
        let payload = buf[at..at + len].to_vec();
        buf.drain(..at + len);
        if seen.close.is_some() {
            seen.after_close += 1;
            continue;
        }
        match op {
            0x1 => seen.texts.push(String::from_utf8(payload).expect("server text is UTF-8")),
            0x8 => {
                assert!(payload.len() >= 2, "a Close frame with a code");
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                seen.close = Some((code, String::from_utf8_lossy(&payload[2..]).into_owned()));
            }
            _ => {} // pings
        }
    }
}

/// Connects over raw TCP and reads up to the hello.
async fn connect(srv: &TestServer, cookie: &str) -> (TcpStream, Vec<u8>, Seen) {
    let mut tcp = TcpStream::connect(srv.addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Cookie: {cookie}\r\nOrigin: {}\r\n\r\n",
        srv.addr,
        srv.origin()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head = loop {
        let n = tcp.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed during the handshake");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    assert!(buf.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&buf));
    buf.drain(..head);
    let mut seen = Seen::default();
    while seen.texts.is_empty() {
        parse(&mut buf, &mut seen);
        if !seen.texts.is_empty() {
            break;
        }
        let n = tcp.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before the hello");
        buf.extend_from_slice(&chunk[..n]);
    }
    assert!(seen.texts[0].contains(r#""type":"hello""#), "{:?}", seen.texts);
    (tcp, buf, seen)
}

/// One round: breaks the protocol, keeps writing, and checks the goodbye arrives
/// whole and the connection ends with EOF, not a reset.
async fn round(srv: &TestServer, cookie: &str, case: &Case, n: usize) {
    let (tcp, mut buf, mut seen) = connect(srv, cookie).await;
    let (mut rd, mut wr) = tcp.into_split();
    let (stop, mut stopped) = watch::channel(false);
    let opening = case.opening.clone();
    let garbage = case.garbage.clone();
    // The writer: the violation, then garbage until the reader has the Close frame;
    // then it closes its side, as a client answering the close would.
    let writer = tokio::spawn(async move {
        wr.write_all(&opening).await?;
        let mut written = 0;
        while written < GARBAGE_MIN || (!*stopped.borrow() && written < GARBAGE_BUDGET) {
            wr.write_all(&garbage).await?;
            written += garbage.len();
            tokio::task::yield_now().await;
        }
        let _ = stopped.wait_for(|s| *s).await;
        wr.shutdown().await?;
        Ok::<usize, std::io::Error>(written)
    });
    let mut chunk = vec![0u8; 16 * 1024];
    let eof = loop {
        match rd.read(&mut chunk).await {
            Ok(0) => break Ok(()),
            Ok(k) => {
                buf.extend_from_slice(&chunk[..k]);
                parse(&mut buf, &mut seen);
                if seen.close.is_some() {
                    let _ = stop.send(true);
                }
            }
            Err(e) => break Err(e),
        }
    };
    let _ = stop.send(true);
    let wrote = writer.await.unwrap();
    let closing = seen.texts.iter().find(|t| t.contains(r#""type":"closing""#));
    assert!(eof.is_ok(), "round {n}: {:?} instead of EOF; read {seen:?}", eof.unwrap_err());
    assert!(
        closing.is_some_and(|t| t.contains(&format!(r#""code":"{}""#, case.code))),
        "round {n}: no `closing` `{}`: {seen:?}",
        case.code
    );
    assert_eq!(seen.close, Some((case.close, case.code.to_string())), "round {n}: {seen:?}");
    assert_eq!(seen.after_close, 0, "round {n}: nothing follows the Close frame");
    assert!(buf.is_empty(), "round {n}: a partial frame before EOF");
    assert!(wrote.is_ok(), "round {n}: the client's writes failed: {wrote:?}");
    // The server ended the connection when the client closed its side, not at the
    // end of the goodbye's 2 s wait (nor never: a task that died would leave it
    // registered).
    let gone = async {
        while srv.state.hub.connection_count() > 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(1), gone).await.is_ok(),
        "round {n}: the server still holds the connection"
    );
}

async fn rounds(case: Case) {
    let srv = TestServer::start_with(Backend::Sqlite, |c| c.max_frame_bytes = MAX).await;
    let ann = srv.user("ann").await;
    let cookie = ann.cookie.clone().unwrap();
    for n in 0..ROUNDS {
        tokio::time::timeout(ROUND_WAIT, round(&srv, &cookie, &case, n))
            .await
            .unwrap_or_else(|_| panic!("round {n} took over {ROUND_WAIT:?}"));
    }
    // The account is fine: a well-behaved socket works.
    let mut ws = ann.ws().await;
    assert!(matches!(
        ws.request(serde_json::json!({"type": "ping"})).await,
        rtm::ws::protocol::ServerFrame::Pong { .. }
    ));
}

/// The header of a masked text frame announcing `len` bytes, whose payload then
/// follows as the garbage: the client is still writing its oversized message.
fn oversized_header(len: usize) -> Vec<u8> {
    let mut f = vec![0x81, 0x80 | 127];
    f.extend_from_slice(&(len as u64).to_be_bytes());
    f.extend_from_slice(&MASK);
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_in_one_frame_gets_1009() {
    let mut opening = oversized_header(GARBAGE_BUDGET + 64 * 1024);
    opening.extend(std::iter::repeat_n(b'x', 8 * 1024));
    rounds(Case { opening, garbage: vec![b'x'; 8 * 1024], close: 1009, code: "message_too_big" }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_in_fragments_gets_1009() {
    // Each fragment fits the frame limit; together they pass the message limit.
    let part = vec![b'x'; MAX / 2 + 100];
    let mut opening = frame(0x01, &part, true);
    opening.extend(frame(0x00, &part, true));
    rounds(Case { opening, garbage: frame(0x00, &part, true), close: 1009, code: "message_too_big" }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_text_gets_1007() {
    let opening = frame(0x81, b"{\"type\":\"ping\",\"id\":\"\xff\xfe\"}", true);
    rounds(Case { opening, garbage: ping_command(), close: 1007, code: "invalid_utf8" }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_a_fragment_gets_1007() {
    let opening = frame(0x01, b"{\"type\":\"ping\",\"id\":\"\xc0\xaf", true);
    rounds(Case { opening, garbage: frame(0x00, b"xxxxxxxx", true), close: 1007, code: "invalid_utf8" }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmasked_client_frame_gets_1002() {
    let opening = frame(0x81, br#"{"type":"ping","id":"bare"}"#, false);
    rounds(Case { opening, garbage: ping_command(), close: 1002, code: "protocol_error" }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_opcode_gets_1002() {
    let opening = frame(0x83, b"what is this", true);
    rounds(Case { opening, garbage: ping_command(), close: 1002, code: "protocol_error" }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_control_frame_gets_1002() {
    // A ping without FIN: control frames must not be fragmented.
    let opening = frame(0x09, b"half", true);
    rounds(Case { opening, garbage: ping_command(), close: 1002, code: "protocol_error" }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_bits_get_1002() {
    // RSV1 set with no extension negotiated.
    let opening = frame(0xc1, br#"{"type":"ping"}"#, true);
    rounds(Case { opening, garbage: ping_command(), close: 1002, code: "protocol_error" }).await
}
