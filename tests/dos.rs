//! Denial of service at the HTTP edge: clients that open connections and stall must
//! not take the service from everybody else. Each phase of an HTTP connection has a
//! deadline (`--http-idle-secs`, `--http-body-secs`) and one address may hold only so
//! many HTTP connections (`--max-conns-per-addr`); see docs/PROTOCOL.md §6.

mod common;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::{Backend, Client, TestServer, Ws};
use rtm::ws::protocol::ServerFrame;
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};

/// The body timeout of these tests (seconds), and the slack allowed on top of it
/// (a loaded test machine, 2,000 sockets to close).
const BODY_SECS: u64 = 2;
const IDLE_SECS: u64 = 2;
const SLACK: Duration = Duration::from_secs(4);

fn is_msg(room: i64, text: String) -> impl FnMut(&ServerFrame) -> bool {
    move |f| matches!(f, ServerFrame::Message(e) if e.room == room && e.text == text)
}

/// A POST head announcing 1,000 bytes of body, and the first few of them.
fn stalled_post(addr: SocketAddr) -> String {
    format!(
        "POST /api/login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"login\":\"x"
    )
}

/// Reads until the server closes (end of stream or reset) or `deadline`: what was
/// read, and whether it closed.
async fn read_until_closed(tcp: &mut TcpStream, deadline: Instant) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => return (got, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// One round of a person using the service: sign up, sign in, join the lobby, open a
/// WebSocket, send a message that `listener` receives, receive `listener`'s answer.
async fn one_round(srv_addr: SocketAddr, i: usize, room: i64, listener: &mut Ws) {
    let mut c = Client::for_addr(srv_addr);
    let name = format!("walker{i}");
    let (s, b) = c.register(&name).await;
    assert_eq!(s, 201, "sign-up {i}: {b}");
    let (s, b) = c.login(&name, &common::password_of(&name)).await;
    assert_eq!(s, 200, "sign-in {i}: {b}");
    let (s, b) = c.post(&format!("/api/rooms/{room}/join"), json!({})).await;
    assert_eq!(s, 200, "join {i}: {b}");
    let mut ws = c.ws().await;
    let text = format!("hello from {name}");
    ws.say(room, &text).await.expect("kept");
    listener.recv_until(is_msg(room, text)).await;
    let answer = format!("welcome {name}");
    listener.say(room, &answer).await.expect("kept");
    ws.recv_until(is_msg(room, answer)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_bodies_do_not_stop_service_and_are_closed() {
    const STALLED: usize = 2_000;
    let srv = TestServer::start_with(Backend::Sqlite, |c| {
        c.http_body_secs = BODY_SECS;
        c.http_idle_secs = IDLE_SECS;
        // Every client here is 127.0.0.1: no per-address cap, so only the timeouts
        // protect the service.
        c.max_conns_per_addr = 0;
    })
    .await;
    let addr = srv.addr;
    let ann = srv.user("ann").await;
    let room = ann.create_room("lobby", json!({})).await;
    let mut listener = ann.ws().await;

    // The normal client: rounds of sign-up, sign-in and chat until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicUsize::new(0));
    let walker = tokio::spawn({
        let (stop, rounds) = (stop.clone(), rounds.clone());
        async move {
            let mut worst = Duration::ZERO;
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                tokio::time::timeout(Duration::from_secs(10), one_round(addr, i, room, &mut listener))
                    .await
                    .unwrap_or_else(|_| panic!("round {i} took over 10 s"));
                worst = worst.max(t.elapsed());
                rounds.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            worst
        }
    });

    // 2,000 connections that send a head and part of the body, then nothing. Each
    // reads what the server answers until it closes, from the moment it stalled.
    let started = Instant::now();
    let mut stalled = Vec::with_capacity(STALLED);
    for n in 0..STALLED {
        stalled.push(tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.expect("connect");
            tcp.write_all(stalled_post(addr).as_bytes()).await.expect("send the head");
            let t = Instant::now();
            let (got, closed) = read_until_closed(&mut tcp, t + Duration::from_secs(BODY_SECS) + SLACK).await;
            (t.elapsed(), String::from_utf8_lossy(&got).into_owned(), closed)
        }));
        if n % 200 == 199 {
            // Let the listen backlog drain between bursts.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let rounds_at_stall = rounds.load(Ordering::Relaxed);
    let mut worst_close = Duration::ZERO;
    for (n, t) in stalled.into_iter().enumerate() {
        let (took, answer, closed) = t.await.expect("stalled client task");
        assert!(closed, "stalled connection {n} still open after {took:?}: {answer:?}");
        assert!(answer.starts_with("HTTP/1.1 408"), "stalled connection {n} got {answer:?}");
        worst_close = worst_close.max(took);
    }
    let rounds_during = rounds.load(Ordering::Relaxed) - rounds_at_stall;
    stop.store(true, Ordering::Relaxed);
    let worst_round = walker.await.expect("the normal client never failed");
    eprintln!(
        "{STALLED} stalled connections, all answered 408 and closed within {worst_close:?} (body timeout {BODY_SECS} s); \
         {rounds_during} rounds of the normal client meanwhile, the slowest {worst_round:?}; total {:?}",
        started.elapsed()
    );
    assert!(
        rounds_during >= 2,
        "the normal client kept going: {rounds_during} rounds while the stalled ones were open"
    );
    // And the service is whole afterwards.
    assert_eq!(ann.get("/healthz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http_phase_has_a_deadline() {
    let srv = TestServer::start_with(Backend::Sqlite, |c| {
        c.http_body_secs = BODY_SECS;
        c.http_idle_secs = IDLE_SECS;
    })
    .await;
    let addr = srv.addr;
    let limit = Duration::from_secs(IDLE_SECS) + SLACK;

    // A connection that never sends anything.
    let t = Instant::now();
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let (_, closed) = read_until_closed(&mut silent, t + limit).await;
    assert!(closed, "a silent connection is closed");
    assert!(t.elapsed() >= Duration::from_secs(IDLE_SECS) - Duration::from_millis(200), "not before the idle time");

    // Half a head (slowloris).
    let t = Instant::now();
    let mut half = TcpStream::connect(addr).await.expect("connect");
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.expect("send");
    let (_, closed) = read_until_closed(&mut half, t + limit).await;
    assert!(closed, "a half-sent head is closed");

    // Keep-alive idle after a full request and its response.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).await.expect("send");
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf)).await.expect("answered").expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&buf[..n]));
    let t = Instant::now();
    let (got, closed) = read_until_closed(&mut idle, t + limit).await;
    assert!(closed && got.is_empty(), "an idle keep-alive connection is closed: {got:?}");
    assert!(t.elapsed() >= Duration::from_secs(IDLE_SECS) - Duration::from_millis(200), "not before the idle time");

    // A body dripped one byte at a time, each well within the body timeout: the
    // deadline is for the whole body, not between bytes.
    let t = Instant::now();
    let mut drip = TcpStream::connect(addr).await.expect("connect");
    drip.write_all(stalled_post(addr).as_bytes()).await.expect("send");
    let dripping = async {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if drip.write_all(b" ").await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(BODY_SECS) + SLACK, dripping).await;
    assert!(t.elapsed() < Duration::from_secs(BODY_SECS) + SLACK, "a dripping body is cut off");
    let (got, _) = read_until_closed(&mut drip, Instant::now() + Duration::from_secs(2)).await;
    let got = String::from_utf8_lossy(&got);
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got:?}");

    // A WebSocket is not an HTTP connection any more: it outlives both timeouts.
    let ann = srv.user("ann").await;
    let room = ann.create_room("lobby", json!({})).await;
    let mut ws = ann.ws().await;
    tokio::time::sleep(Duration::from_secs(IDLE_SECS.max(BODY_SECS) + 1)).await;
    ws.say(room, "still here").await.expect("the socket outlived the HTTP timeouts");
}

/// A connection from `ip` (any 127.x address is loopback on Linux).
async fn connect_from(ip: &str, addr: SocketAddr) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind(format!("{ip}:0").parse().expect("ip")).expect("bind");
    sock.connect(addr).await.expect("connect")
}

/// Sends a GET /healthz: whether it was answered 200.
async fn healthz_on(tcp: &mut TcpStream, addr: SocketAddr) -> bool {
    let req = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    if tcp.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 4096];
    match tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_address_are_capped() {
    let srv = TestServer::start_with(Backend::Sqlite, |c| c.max_conns_per_addr = 5).await;
    let addr = srv.addr;

    // Upgraded WebSockets do not count: one person with eight tabs.
    {
        let ann = srv.user("ann").await;
        let room = ann.create_room("lobby", json!({})).await;
        let mut tabs = Vec::new();
        for _ in 0..8 {
            tabs.push(ann.ws().await);
        }
        tabs[7].say(room, "eight tabs").await.expect("kept");
        assert_eq!(ann.get("/api/me").await.0, 200, "HTTP still served beside them");
    }
    // The client above (its pooled connections) is gone; let the server see it.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Five HTTP connections from 127.0.0.1 are served; a sixth is closed at once.
    let mut five = Vec::new();
    for _ in 0..5 {
        let mut c = connect_from("127.0.0.1", addr).await;
        assert!(healthz_on(&mut c, addr).await, "one of the first five is served");
        five.push(c);
    }
    let mut sixth = connect_from("127.0.0.1", addr).await;
    assert!(!healthz_on(&mut sixth, addr).await, "the sixth is refused");
    let (_, closed) = read_until_closed(&mut sixth, Instant::now() + Duration::from_secs(2)).await;
    assert!(closed, "the sixth is closed");

    // Another address has its own count.
    let mut other = connect_from("127.0.0.2", addr).await;
    assert!(healthz_on(&mut other, addr).await, "127.0.0.2 is not limited by 127.0.0.1's count");

    // One of the five closes: there is room again.
    drop(five.pop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = connect_from("127.0.0.1", addr).await;
    assert!(healthz_on(&mut again, addr).await, "a place freed is taken again");
}

/// Counts the log lines that mention a failed accept.
#[derive(Clone, Default)]
struct AcceptLog(Arc<AtomicUsize>);

impl std::io::Write for AcceptLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let line = String::from_utf8_lossy(buf);
        if line.contains("accept failed") {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn set_nofile(soft: u64) -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        let old = lim.rlim_cur;
        lim.rlim_cur = soft;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        old
    }
}

/// Out of file descriptors: the server keeps serving what it has, logs the episode
/// once (not every 50 ms), and accepts again as soon as descriptors are free. The
/// descriptor limit is the process's, so this runs only under nextest (a process per
/// test); `cargo test` runs the tests of this file as threads of one process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_is_survived_and_logged_once() {
    if std::env::var_os("NEXTEST_RUN_ID").is_none() {
        eprintln!("skipped: lowers the process's descriptor limit, run it with cargo nextest");
        return;
    }
    let log = AcceptLog::default();
    let writer = log.clone();
    let _ = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).try_init();
    let srv = TestServer::start(Backend::Sqlite).await;
    let addr = srv.addr;
    let ann = srv.user("ann").await;
    let room = ann.create_room("lobby", json!({})).await;
    let mut ws = ann.ws().await;

    let open = std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count() as u64;
    let old = set_nofile(open + 40);
    // Connect until the process is out of descriptors (the client's side or the
    // server's accept, whichever comes first); keep them open for a while.
    let mut held = Vec::new();
    for _ in 0..100 {
        match TcpStream::connect(addr).await {
            Ok(c) => held.push(c),
            Err(_) => break,
        }
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    // The WebSocket it already had still works meanwhile.
    ws.say(room, "while out of descriptors").await.expect("kept");
    drop(held);
    set_nofile(old);
    // Accepting again: a new connection is served at once.
    let c = Client::for_addr(addr);
    let (s, _) = tokio::time::timeout(Duration::from_secs(3), c.get("/healthz")).await.expect("answered in time");
    assert_eq!(s, 200);
    let lines = log.0.load(Ordering::Relaxed);
    assert!((1..=2).contains(&lines), "the episode is logged once (start and end), not per retry: {lines} lines");
}

/// Writes pipelined `GET /api/config` requests without ever reading a response, from a
/// socket with a small receive buffer, until the server closes the connection. Returns
/// the bytes written.
async fn pipeline_without_reading(ip: &str, addr: SocketAddr) -> u64 {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    // A small window: the answers pile up in the server's send buffer, not ours.
    sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    sock.bind(format!("{ip}:0").parse().expect("ip")).expect("bind");
    let mut tcp = sock.connect(addr).await.expect("connect");
    let batch = format!("GET /api/config HTTP/1.1\r\nHost: {addr}\r\n\r\n").repeat(100);
    let mut written = 0u64;
    while tcp.write_all(batch.as_bytes()).await.is_ok() {
        written += batch.len() as u64;
    }
    written
}

/// A client that pipelines requests and never reads the answers fills the kernel's
/// buffers; the server's write then waits. It must not wait forever: after
/// `--http-idle-secs` without progress the connection is closed and its place under
/// the per-address cap is free again. (The client never stops sending, so the
/// keep-alive timer, which runs only while the server waits for a request, never
/// fires: only the write deadline can end these connections.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_responses_is_closed() {
    let srv = TestServer::start_with(Backend::Sqlite, |c| {
        c.http_idle_secs = IDLE_SECS;
        c.max_conns_per_addr = 3;
    })
    .await;
    let addr = srv.addr;
    let started = Instant::now();
    let writers: Vec<_> = (0..3).map(|_| tokio::spawn(pipeline_without_reading("127.0.0.3", addr))).collect();
    // While they stall, they hold 127.0.0.3's three places.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut fourth = connect_from("127.0.0.3", addr).await;
    assert!(!healthz_on(&mut fourth, addr).await, "the three stalled connections hold the address's places");
    // Each is closed by the server: the client's next write fails.
    for w in writers {
        let written = tokio::time::timeout(Duration::from_secs(IDLE_SECS) + SLACK * 3, w)
            .await
            .expect("the server closed a connection whose responses nobody read")
            .expect("writer");
        assert!(written > 100_000, "enough requests to fill the buffers: {written} bytes");
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(IDLE_SECS), "closed only after the idle time: {took:?}");
    // Their places are free again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = connect_from("127.0.0.3", addr).await;
    assert!(healthz_on(&mut again, addr).await, "the address is served again");
    // The server is otherwise fine.
    let ann = srv.user("ann").await;
    assert_eq!(ann.get("/api/me").await.0, 200);
}

/// The raw answer to a WebSocket handshake with `cookie`: status line and body.
async fn handshake_answer(addr: SocketAddr, cookie: &str, origin: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: {origin}\r\nCookie: {cookie}\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await.expect("answered").expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// One account may hold `--max-sockets-per-user` WebSockets on a node: the next
/// handshake is refused with 429 `too_many_connections` and the open ones keep
/// working; a closed one frees its place; other accounts are not affected; API-token
/// sockets count too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_per_account_are_capped() {
    let srv = TestServer::start_with(Backend::Sqlite, |c| c.max_sockets_per_user = 3).await;
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let room = ann.create_room("lobby", json!({})).await;
    let mut tabs = vec![ann.ws().await, ann.ws().await, ann.ws().await];
    let cookie = ann.cookie.clone().expect("cookie");
    let refused = handshake_answer(srv.addr, &cookie, &srv.origin()).await;
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    assert!(refused.contains("\"too_many_connections\""), "{refused}");
    // An API token is the same account.
    let (s, b) = ann.post("/api/me/tokens", json!({ "name": "bot" })).await;
    assert_eq!(s, 201, "{b}");
    let token = b["token"].as_str().expect("token").to_string();
    assert_eq!(Ws::connect(srv.addr, None, None, Some(&token)).await.err(), Some(429));
    // The open ones are untouched.
    tabs[2].say(room, "still three").await.expect("kept");
    // Someone else is not counted against ann.
    let mut bob_tabs = Vec::new();
    for _ in 0..3 {
        bob_tabs.push(bob.ws().await);
    }
    // A closed tab frees its place (once the server has seen the close).
    let mut closing = tabs.pop().expect("tab");
    closing.stream.close(None).await.expect("close");
    let deadline = Instant::now() + Duration::from_secs(5);
    let again = loop {
        match Ws::connect(srv.addr, None, None, Some(&token)).await {
            Ok(ws) => break ws,
            Err(429) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(s) => panic!("a freed place was not given back: {s}"),
        }
    };
    drop(again);
}
