//! What an operator sees: `/metrics` on its own listener moving with real traffic
//! (and absent from the public one), `/healthz` (alive) against `/readyz` (database,
//! bus, not draining), and `--log-format json` lines from the real binary that carry
//! no secret.

mod common;

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{cluster::PrivatePg, *};
use rtm::ws::protocol::ServerFrame;
use serde_json::{Value, json};

/// A free address on 127.0.0.1 for the metrics listener.
fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], cluster::free_port()))
}

/// GETs `url` and returns the status and the body as text.
async fn get_text(url: &str) -> (u16, String) {
    let res = reqwest::get(url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = res.status().as_u16();
    (status, res.text().await.expect("body"))
}

/// The value of one series (`name` or `name{labels}`, exactly as rendered) on a
/// Prometheus text page; 0 when the series is absent (a counter never touched).
fn series(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            (key == name).then(|| value.parse::<f64>().expect("a number"))
        })
        .unwrap_or(0.0)
}

async fn scrape(addr: SocketAddr) -> String {
    let (status, page) = get_text(&format!("http://{addr}/metrics")).await;
    assert_eq!(status, 200, "{page}");
    page
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_real_traffic_and_stay_off_the_public_listener() {
    let metrics = free_addr();
    let srv = TestServer::start_with(Backend::Sqlite, |c| c.metrics_listen = Some(metrics)).await;
    // The metrics listener comes up with the server.
    let deadline = Instant::now() + Duration::from_secs(5);
    while reqwest::get(format!("http://{metrics}/metrics")).await.is_err() {
        assert!(Instant::now() < deadline, "no metrics listener on {metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = scrape(metrics).await;
    assert!(before.contains("# TYPE rtm_deliveries_total counter"), "{before}");
    assert_eq!(series(&before, "rtm_connections_open"), 0.0);
    let rss = series(&before, "process_resident_memory_bytes");
    assert!(rss > 1_000_000.0, "RSS {rss}");

    // Real traffic: two people sign up, connect, one room, ten messages.
    let ann = srv.user("ann").await;
    let bob = srv.user("bob").await;
    let room = ann.create_room("metrics", json!({})).await;
    let (s, b) = bob.post(&format!("/api/rooms/{room}/join"), json!({})).await;
    assert_eq!(s, 200, "{b}");
    let mut wa = ann.ws().await;
    let mut wb = bob.ws().await;
    let during = scrape(metrics).await;
    assert_eq!(series(&during, "rtm_connections_open"), 2.0, "{during}");
    for i in 0..10 {
        wa.say(room, &format!("hello {i}")).await.expect("kept");
    }
    let (f, _) = wb.recv_until(|f| matches!(f, ServerFrame::Message(e) if e.text == "hello 9")).await;
    assert!(matches!(f, ServerFrame::Message(_)));
    // One command that fails, with the code the client was told.
    let err = wa.request(json!({"type": "history", "room": 987_654})).await;
    let ServerFrame::Error { code, .. } = err else { panic!("history of no room: {err:?}") };
    let ping = wa.request(json!({"type": "ping"})).await;
    assert!(matches!(ping, ServerFrame::Pong { .. }));

    let after = scrape(metrics).await;
    // From just before the sends (joining a room goes through the pipeline too).
    let moved = |name: &str| series(&after, name) - series(&during, name);
    assert_eq!(moved("rtm_commands_total{type=\"send\"}"), 10.0, "{after}");
    assert_eq!(moved("rtm_commands_total{type=\"history\"}"), 1.0, "{after}");
    assert_eq!(moved("rtm_commands_total{type=\"ping\"}"), 1.0, "{after}");
    assert_eq!(moved(&format!("rtm_command_errors_total{{code=\"{code}\"}}")), 1.0, "{after}");
    // Each message reached both sockets: at least 20 frames handed to outboxes (joins
    // and presence add more), and written.
    assert!(moved("rtm_deliveries_total") >= 20.0, "{after}");
    assert!(moved("rtm_outbox_writes_total") >= 10.0, "{after}");
    // Ten messages kept in at most ten batches, each timed.
    let batches = moved("rtm_pipeline_batch_size_count");
    assert!((1.0..=10.0).contains(&batches), "{batches} batches: {after}");
    assert_eq!(moved("rtm_pipeline_batch_size_sum"), 10.0, "{after}");
    assert_eq!(moved("rtm_store_seconds_count{op=\"append\"}"), batches, "{after}");
    assert!(moved("rtm_pool_wait_seconds_count") >= batches, "{after}");
    // Plain sends to a room the writer knows: every batch by SQLite's short path.
    assert_eq!(moved("rtm_store_appends_total{path=\"short\"}"), batches, "{after}");
    assert_eq!(series(&after, "rtm_store_appends_total{path=\"retaken\"}"), 0.0, "{after}");
    // The sends after the first found the room in the cache.
    assert!(moved("rtm_room_cache_hits_total") >= 9.0, "{after}");
    assert!(series(&after, "rtm_room_cache_misses_total") >= 1.0, "{after}");
    assert_eq!(series(&after, "rtm_bus_up"), 1.0);
    assert_eq!(series(&after, "rtm_slow_consumers_total"), 0.0);

    // The public listener has no metrics: /metrics there is the web client's page.
    let (status, page) = get_text(&srv.url("/metrics")).await;
    assert!(!page.contains("rtm_") && !page.contains("# TYPE"), "public /metrics ({status}): {page}");
    // And the metrics listener serves nothing else.
    let (status, _) = get_text(&format!("http://{metrics}/api/me")).await;
    assert_eq!(status, 404);
    drop((wa, wb));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_redis_bus_between_two_nodes() {
    let metrics = free_addr();
    let srv = TestServer::start_with(Backend::Cluster, |c| c.metrics_listen = Some(metrics)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while reqwest::get(format!("http://{metrics}/metrics")).await.is_err() {
        assert!(Instant::now() < deadline, "no metrics listener on {metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Both nodes of this process count into one registry (the figures are process-wide);
    // what matters is that traffic crossing Redis moves them.
    let before = scrape(metrics).await;
    let ann = srv.user("ann").await; // node 0
    let bob = srv.user("bob").await; // node 1
    let room = ann.create_room("bus", json!({})).await;
    let (s, b) = bob.post(&format!("/api/rooms/{room}/join"), json!({})).await;
    assert_eq!(s, 200, "{b}");
    let mut wa = ann.ws().await;
    let mut wb = bob.ws().await;
    for i in 0..5 {
        wa.say(room, &format!("over redis {i}")).await.expect("kept");
    }
    wb.recv_until(|f| matches!(f, ServerFrame::Message(e) if e.text == "over redis 4")).await;
    let after = scrape(metrics).await;
    let moved = |name: &str| series(&after, name) - series(&before, name);
    assert!(moved("rtm_bus_published_total") >= 5.0, "{after}");
    assert!(moved("rtm_bus_received_total") >= 5.0, "{after}");
    assert!(after.contains("rtm_bus_receive_backlog"), "{after}");
    assert_eq!(series(&after, "rtm_bus_up"), 1.0, "{after}");
    drop((wa, wb));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_503_while_draining_and_healthz_stays_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = rtm::Config::for_tests(dir.path().to_path_buf());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.drain_delay_secs = 2;
    config.shutdown_grace_secs = 2;
    let listener = tokio::net::TcpListener::bind(config.listen).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    config.listen = addr;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        rtm::run(config, listener, async move {
            let _ = stopped.await;
        })
        .await
    });
    let client = Client::for_addr(addr);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, b) = client.get("/readyz").await;
        if s == 200 {
            assert_eq!(b, json!({"status": "ready", "database": "ok", "bus": "local"}));
            break;
        }
        assert!(Instant::now() < deadline, "never ready: {s} {b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let signalled = Instant::now();
    let _ = stop.send(());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Draining: not ready (a fresh connection is still accepted during the delay), alive.
    let fresh = Client::for_addr(addr);
    let (s, b) = fresh.get("/readyz").await;
    assert_eq!((s, b["error"]["code"].as_str()), (503, Some("unavailable")), "{b}");
    assert!(b["error"]["message"].as_str().unwrap_or("").contains("draining"), "{b}");
    let (s, b) = fresh.get("/healthz").await;
    assert_eq!((s, b["status"].as_str()), (200, Some("ok")), "{b}");
    assert!(signalled.elapsed() < Duration::from_secs(2), "checked within the delay");
    // After the delay the listener closes and the server ends.
    let ended = tokio::time::timeout(Duration::from_secs(10), server).await.expect("server ends");
    ended.expect("server task").expect("server ran");
    assert!(signalled.elapsed() >= Duration::from_secs(2), "the listener stayed open for the delay");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "listener closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_503_while_the_database_is_down_and_healthz_stays_up() {
    let pg = PrivatePg::start().await;
    let url = pg.url();
    let srv = TestServer::start_with(Backend::Postgres, |c| c.database = Some(url)).await;
    let c = srv.client();
    let (s, b) = c.get("/readyz").await;
    assert_eq!((s, b["status"].as_str()), (200, Some("ready")), "{b}");
    pg.down();
    let asked = Instant::now();
    let (s, b) = c.get("/readyz").await;
    assert_eq!((s, b["error"]["code"].as_str()), (503, Some("unavailable")), "{b}");
    assert!(asked.elapsed() < Duration::from_secs(3), "readyz took {:?}", asked.elapsed());
    // Alive all the same: a liveness probe must not restart a node for its database.
    let (s, b) = c.get("/healthz").await;
    assert_eq!((s, b["status"].as_str()), (200, Some("ok")), "{b}");
    pg.up().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (s, b) = c.get("/readyz").await;
        if s == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "not ready again after the database came back: {b}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_503_while_redis_is_down() {
    let mut redis = cluster::PrivateRedis::start().await;
    let redis_url = redis.url();
    let srv = TestServer::start_with(Backend::Cluster, |c| c.bus = Some(redis_url.clone())).await;
    let c = srv.peer.as_ref().expect("second node").node_client();
    let (s, b) = c.get("/readyz").await;
    assert_eq!((s, b["bus"].as_str()), (200, Some("up")), "{b}");
    redis.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, b) = c.get("/readyz").await;
        if s == 503 {
            assert_eq!(b["error"]["code"].as_str(), Some("unavailable"), "{b}");
            break;
        }
        assert!(Instant::now() < deadline, "still ready with Redis gone: {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, b) = c.get("/healthz").await;
    assert_eq!((s, b["bus"].as_str()), (200, Some("down")), "{b}");
    redis.up().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while c.get("/readyz").await.0 != 200 {
        assert!(Instant::now() < deadline, "not ready again after Redis came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_without_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = free_addr();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rtm"));
    for (k, _) in std::env::vars() {
        if k.starts_with("RTM_") {
            cmd.env_remove(k);
        }
    }
    // Debug level on our crate: the most the server ever says.
    cmd.args(["--log-format", "json", "--log", "rtm=debug,info", "--listen", &addr.to_string()])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("rtm starts");
    let stderr = child.stderr.take().expect("stderr");
    let lines = std::thread::spawn(move || BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<_>>());
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "rtm did not listen on {addr}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Secrets pass through: a password (sign-up, a failed and a good sign-in), the
    // session cookie, an API token and a message body.
    let mut ann = Client::for_addr(addr);
    let (s, b) = ann.register("ann").await;
    assert_eq!(s, 201, "{b}");
    let (s, _) = Client::for_addr(addr).login("ann", "wrong-password-zz").await;
    assert_eq!(s, 401);
    let (s, _) = ann.login("ann", &password_of("ann")).await;
    assert_eq!(s, 200);
    let (s, tok) = ann.post("/api/me/tokens", json!({"name": "ci"})).await;
    assert_eq!(s, 201, "{tok}");
    let token = tok["token"].as_str().expect("token").to_string();
    let room = ann.create_room("logs", json!({})).await;
    let mut ws = ann.ws().await;
    let body = "the-secret-message-body-42";
    ws.say(room, body).await.expect("kept");
    drop(ws);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // SIGTERM: the shutdown lines too.
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().expect("rtm exits");
    assert!(status.success(), "rtm exited with {status}");
    let lines = lines.join().expect("stderr reader");
    assert!(lines.len() >= 3, "{lines:?}");
    let session = ann.cookie.clone().expect("cookie");
    let session = session.split_once('=').map(|(_, v)| v.to_string()).expect("name=value");
    let mut messages = Vec::new();
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{line}");
        messages.push(v["fields"]["message"].as_str().unwrap_or("").to_string());
        for secret in [password_of("ann").as_str(), "wrong-password-zz", &session, &token, body] {
            assert!(!line.contains(secret), "a secret in the logs: {line}");
        }
    }
    assert!(messages.iter().any(|m| m == "serving"), "{messages:?}");
    assert!(messages.iter().any(|m| m == "stopped"), "{messages:?}");
}
