//! The shared test harness: starts the real server (`rtm::serve`, the same code path
//! as `main`) on 127.0.0.1:0 against a real SQLite file or a fresh PostgreSQL database,
//! and gives tests HTTP and WebSocket clients that talk to it over real sockets.
//!
//! PostgreSQL comes from `RTM_TEST_PG_URL`, MariaDB/MySQL from `RTM_TEST_MYSQL_URL`
//! (scripts/test starts throwaway servers and sets both); each test gets its own
//! database.

#![allow(dead_code)]

pub mod cluster;
pub mod nginx;

use std::{net::SocketAddr, time::Duration};

use futures_util::{SinkExt, StreamExt};
use rtm::{AppState, Config, ws::protocol::ServerFrame};
use serde_json::{Value, json};
use tokio::{net::TcpStream, sync::oneshot, task::JoinHandle};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    /// MariaDB (or MySQL) from `RTM_TEST_MYSQL_URL`.
    Mysql,
    /// Two nodes on one PostgreSQL database and the test Redis; the test's clients
    /// alternate between them, so two people of a story are on different nodes.
    Cluster,
}

/// Generates one `#[tokio::test]` per backend from `async fn name(b: Backend)`: on
/// SQLite, on PostgreSQL, on MariaDB, and on two nodes with the people split between
/// them.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::common::Backend::Sqlite).await }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::common::Backend::Postgres).await }
            )*
        }
        mod mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::common::Backend::Mysql).await }
            )*
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::common::Backend::Cluster).await }
            )*
        }
    };
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub state: AppState,
    pub config: Config,
    pub backend: Backend,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    pub dir: tempfile::TempDir,
    /// `Backend::Cluster`: the second node, sharing the database and the bus.
    pub peer: Option<Box<TestServer>>,
    /// Which node the next client goes to (clusters alternate).
    turn: std::sync::atomic::AtomicUsize,
}

/// A fresh PostgreSQL database on the test server, as a URL.
pub async fn fresh_pg_database() -> String {
    use sqlx::{AnyConnection, Connection, Executor};
    let admin = std::env::var("RTM_TEST_PG_URL")
        .expect("RTM_TEST_PG_URL is not set: run the suite with scripts/test, which starts PostgreSQL");
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(&admin).await.expect("connect to the test PostgreSQL");
    drop_leftover_databases(&mut conn).await;
    let mut rnd = [0u8; 6];
    getrandom::fill(&mut rnd).expect("random");
    // The test process's pid is in the name, so later runs know when it is gone.
    let name = format!("rtm_t_{}_{}", std::process::id(), hex::encode(rnd));
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.expect("create database");
    let mut url = url::Url::parse(&admin).expect("RTM_TEST_PG_URL is a URL");
    url.set_path(&name);
    url.to_string()
}

/// Drops the databases of test processes that have exited. A server started by
/// scripts/test is thrown away anyway; a long-lived one (RTM_TEST_PG_URL pointing at a
/// developer's PostgreSQL) would otherwise gather hundreds of databases, and its
/// autovacuum visiting them all costs CPU that skews benchmarks on the same machine.
/// Tests run in parallel processes: only a database whose process is gone is dropped.
async fn drop_leftover_databases(conn: &mut sqlx::AnyConnection) {
    use sqlx::{Executor, Row};
    let Ok(rows) =
        conn.fetch_all("SELECT datname::text AS name FROM pg_database WHERE datname LIKE 'rtm\\_t\\_%'").await
    else {
        return;
    };
    for row in rows {
        let Ok(name) = row.try_get::<String, _>(0) else { continue };
        let pid = name.strip_prefix("rtm_t_").and_then(|r| r.split('_').next()).and_then(|p| p.parse::<u32>().ok());
        // Names from before pids were recorded (rtm_t_<hex>) have no pid: theirs are gone.
        let alive = pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}"))).await;
        }
    }
}

/// A fresh database on the test MariaDB/MySQL server, as a URL (utf8mb4, binary
/// collation, like the schema's tables).
pub async fn fresh_mysql_database() -> String {
    use sqlx::{AnyConnection, Connection, Executor, Row};
    let admin = std::env::var("RTM_TEST_MYSQL_URL")
        .expect("RTM_TEST_MYSQL_URL is not set: run the suite with scripts/test, which starts MariaDB");
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(&admin).await.expect("connect to the test MariaDB");
    // Databases of test processes that have exited (see drop_leftover_databases).
    if let Ok(rows) = conn.fetch_all("SELECT CAST(schema_name AS CHAR) AS name FROM information_schema.schemata WHERE schema_name LIKE 'rtm\\_t\\_%'").await {
        for row in rows {
            let Ok(name) = row.try_get::<String, _>(0) else { continue };
            let pid = name.strip_prefix("rtm_t_").and_then(|r| r.split('_').next()).and_then(|p| p.parse::<u32>().ok());
            if !pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists()) {
                let _ = conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}"))).await;
            }
        }
    }
    let mut rnd = [0u8; 6];
    getrandom::fill(&mut rnd).expect("random");
    let name = format!("rtm_t_{}_{}", std::process::id(), hex::encode(rnd));
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")))
        .await
        .expect("create database");
    let mut url = url::Url::parse(&admin).expect("RTM_TEST_MYSQL_URL is a URL");
    url.set_path(&name);
    url.to_string()
}

impl TestServer {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts a server whose config `tweak` may change first.
    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::for_tests(dir.path().to_path_buf());
        config.listen = "127.0.0.1:0".parse().expect("addr");
        config.hash_concurrency = 2;
        config.shutdown_grace_secs = 3;
        config.auth_rate_per_min = 10_000;
        match backend {
            Backend::Sqlite => {}
            Backend::Mysql => config.database = Some(fresh_mysql_database().await),
            Backend::Postgres | Backend::Cluster => config.database = Some(fresh_pg_database().await),
        }
        if backend == Backend::Cluster {
            config.bus = Some(cluster::redis_url());
            config.bus_prefix = cluster::fresh_prefix();
            // Both nodes answer for one origin, as behind a load balancer: the first
            // node's address, chosen now.
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            config.listen = l.local_addr().expect("addr");
            config.public_origin = Some(format!("http://{}", config.listen));
        }
        tweak(&mut config);
        let mut srv = Self::start_config(backend, config.clone(), dir).await;
        if backend == Backend::Cluster {
            let peer_dir = tempfile::tempdir().expect("tempdir");
            config.data_dir = peer_dir.path().to_path_buf();
            config.listen = "127.0.0.1:0".parse().expect("addr");
            srv.peer = Some(Box::new(Self::start_config(backend, config, peer_dir).await));
        }
        srv
    }

    /// Starts a server on an existing data dir/config (restarts).
    pub async fn start_config(backend: Backend, mut config: Config, dir: tempfile::TempDir) -> Self {
        // A restart binds the port it had, so clients reconnect to the same origin.
        let listener = tokio::net::TcpListener::bind(config.listen).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        config.listen = addr;
        let state = AppState::build(&config).await.expect("server builds");
        let (stop, stopped) = oneshot::channel::<()>();
        let (s, c) = (state.clone(), config.clone());
        let task = tokio::spawn(async move {
            rtm::serve(s, &c, listener, async move {
                let _ = stopped.await;
            })
            .await
        });
        TestServer {
            addr,
            state,
            config,
            backend,
            stop: Some(stop),
            task: Some(task),
            dir,
            peer: None,
            turn: Default::default(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn origin(&self) -> String {
        self.config.origin()
    }

    /// Makes the database look upgraded from a version before the search words'
    /// re-index, which has not started (its flag and cursor gone). Waits first for the
    /// first start's own re-index, so it cannot set the flag after: call it once.
    pub async fn pending_search_reindex(&self) {
        use sqlx::{Connection, Executor};
        let store = self.state.chat.store().clone();
        let deadline = tokio::time::Instant::now() + WAIT;
        while store.get_setting("search_words_reindexed").await.expect("setting").is_none() {
            assert!(tokio::time::Instant::now() < deadline, "the first re-index never ended");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sqlx::any::install_default_drivers();
        let mut db = sqlx::AnyConnection::connect(&self.config.database_url()).await.expect("connect");
        let key = if matches!(self.backend, Backend::Mysql) { "`key`" } else { "key" };
        db.execute(sqlx::AssertSqlSafe(format!("DELETE FROM settings WHERE {key} LIKE 'search_words_%'")))
            .await
            .expect("forget the re-index");
    }

    /// Stops the server (drains sockets) and returns what a restart needs.
    pub async fn stop(mut self) -> (Config, tempfile::TempDir) {
        if let Some(peer) = self.peer.take() {
            Box::pin(peer.stop()).await;
        }
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        (self.config.clone(), dir)
    }

    /// An HTTP client with a cookie jar that sends our Origin (like our web page does).
    /// On a cluster, successive clients go to alternate nodes.
    pub fn client(&self) -> Client {
        let turn = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match &self.peer {
            Some(peer) if turn % 2 == 1 => peer.node_client(),
            _ => self.node_client(),
        }
    }

    /// A client of this very node.
    pub fn node_client(&self) -> Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::ORIGIN, self.origin().parse().expect("origin header"));
        let http = reqwest::Client::builder().cookie_store(true).default_headers(headers).build().expect("client");
        Client { http, base: self.url(""), addr: self.addr, cookie: None, origin: self.origin() }
    }

    /// Signs up `username` (email `username@example.org`, password `password-<username>`).
    pub async fn user(&self, username: &str) -> Client {
        let mut c = self.client();
        let (status, body) = c.register(username).await;
        assert_eq!(status, 201, "sign-up of {username} failed: {body}");
        c
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub addr: SocketAddr,
    /// The session cookie value, kept for WebSocket handshakes.
    pub cookie: Option<String>,
    pub origin: String,
}

impl Client {
    /// A client of a server started elsewhere (a node running as its own process).
    pub fn for_addr(addr: SocketAddr) -> Client {
        let origin = format!("http://{addr}");
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::ORIGIN, origin.parse().expect("origin header"));
        let http = reqwest::Client::builder().cookie_store(true).default_headers(headers).build().expect("client");
        Client { http, base: origin.clone(), addr, cookie: None, origin }
    }
}

pub fn password_of(username: &str) -> String {
    format!("password-{username}")
}

impl Client {
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.http.post(format!("{}{}", self.base, path)).json(&body).send().await.expect("request");
        Self::read(r).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.http.patch(format!("{}{}", self.base, path)).json(&body).send().await.expect("request");
        Self::read(r).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.http.put(format!("{}{}", self.base, path)).json(&body).send().await.expect("request");
        Self::read(r).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(format!("{}{}", self.base, path)).send().await.expect("request");
        Self::read(r).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let r = self.http.delete(format!("{}{}", self.base, path)).send().await.expect("request");
        Self::read(r).await
    }

    async fn read(r: reqwest::Response) -> (u16, Value) {
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Remembers the session cookie from a response.
    async fn post_keep_cookie(&mut self, path: &str, body: Value) -> (u16, Value) {
        let r = self.http.post(format!("{}{}", self.base, path)).json(&body).send().await.expect("request");
        for v in r.headers().get_all(reqwest::header::SET_COOKIE) {
            if let Some(kv) = v.to_str().ok().and_then(|s| s.split(';').next())
                && let Some((k, val)) = kv.split_once('=')
                && k.ends_with("rtm_session")
                && !val.is_empty()
            {
                self.cookie = Some(kv.to_string());
            }
        }
        Self::read(r).await
    }

    pub async fn register(&mut self, username: &str) -> (u16, Value) {
        self.register_with(json!({
            "first_name": format!("{username}-first"),
            "last_name": "Tester",
            "email": format!("{username}@example.org"),
            "username": username,
            "password": password_of(username),
        }))
        .await
    }

    pub async fn register_with(&mut self, body: Value) -> (u16, Value) {
        self.post_keep_cookie("/api/register", body).await
    }

    pub async fn login(&mut self, login: &str, password: &str) -> (u16, Value) {
        self.post_keep_cookie("/api/login", json!({ "login": login, "password": password })).await
    }

    pub async fn me(&self) -> Value {
        let (s, b) = self.get("/api/me").await;
        assert_eq!(s, 200, "{b}");
        b["user"].clone()
    }

    pub async fn id(&self) -> i64 {
        self.me().await["id"].as_i64().expect("id")
    }

    pub async fn create_room(&self, name: &str, extra: Value) -> i64 {
        let mut body = json!({ "name": name });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let (s, b) = self.post("/api/rooms", body).await;
        assert_eq!(s, 201, "create room {name}: {b}");
        b["room"]["id"].as_i64().expect("room id")
    }

    /// Opens a WebSocket with this client's session cookie and our Origin.
    pub async fn ws(&self) -> Ws {
        let cookie = self.cookie.clone().expect("signed in");
        Ws::connect(self.addr, Some(&cookie), Some(&self.origin), None).await.expect("websocket connects")
    }
}

pub struct Ws {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pending: std::collections::VecDeque<ServerFrame>,
    next_id: u64,
    pub hello: Option<ServerFrame>,
}

pub const WAIT: Duration = Duration::from_secs(10);

impl Ws {
    /// Connects and reads the hello. Returns the HTTP status on a refused handshake.
    pub async fn connect(
        addr: SocketAddr,
        cookie: Option<&str>,
        origin: Option<&str>,
        bearer: Option<&str>,
    ) -> Result<Ws, u16> {
        let mut req = format!("ws://{addr}/ws").into_client_request().expect("request");
        let h = req.headers_mut();
        if let Some(c) = cookie {
            h.insert("cookie", HeaderValue::from_str(c).expect("cookie"));
        }
        if let Some(o) = origin {
            h.insert("origin", HeaderValue::from_str(o).expect("origin"));
        }
        if let Some(t) = bearer {
            h.insert("authorization", HeaderValue::from_str(&format!("Bearer {t}")).expect("bearer"));
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((stream, _)) => {
                let mut ws = Ws { stream, pending: Default::default(), next_id: 0, hello: None };
                let hello = ws.recv().await;
                assert!(matches!(hello, ServerFrame::Hello { .. }), "first frame must be hello: {hello:?}");
                ws.hello = Some(hello);
                Ok(ws)
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("websocket failed: {e}"),
        }
    }

    pub fn hello_rooms(&self) -> Vec<rtm::ws::protocol::RoomInfo> {
        match &self.hello {
            Some(ServerFrame::Hello { rooms, .. }) => rooms.clone(),
            _ => vec![],
        }
    }

    pub fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("r{}", self.next_id)
    }

    pub async fn send_json(&mut self, v: Value) {
        self.stream.send(Message::Text(v.to_string().into())).await.expect("ws send");
    }

    pub async fn send_raw(&mut self, s: &str) {
        self.stream.send(Message::Text(s.to_string().into())).await.expect("ws send");
    }

    /// The next server frame (batched arrays are split), or panic after `WAIT`.
    pub async fn recv(&mut self) -> ServerFrame {
        self.try_recv(WAIT).await.expect("a frame within the wait")
    }

    /// The next server frame within `d`, if any.
    pub async fn try_recv(&mut self, d: Duration) -> Option<ServerFrame> {
        if let Some(f) = self.pending.pop_front() {
            return Some(f);
        }
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.stream.next()).await.ok()??;
            match msg {
                Ok(Message::Text(t)) => {
                    let frames = rtm::ws::protocol::decode_server(t.as_str())
                        .unwrap_or_else(|e| panic!("bad server frame {t}: {e}"));
                    self.pending.extend(frames);
                    if let Some(f) = self.pending.pop_front() {
                        return Some(f);
                    }
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads until a frame matches `pred`; frames before it are returned too.
    pub async fn recv_until(&mut self, mut pred: impl FnMut(&ServerFrame) -> bool) -> (ServerFrame, Vec<ServerFrame>) {
        let mut skipped = vec![];
        loop {
            let f = self.recv().await;
            if pred(&f) {
                return (f, skipped);
            }
            skipped.push(f);
        }
    }

    /// Sends a message and waits for its ack: returns the seq.
    pub async fn say(&mut self, room: i64, text: &str) -> Option<i64> {
        let id = self.new_id();
        let cid = format!("c-{id}-{}", room);
        self.send_json(json!({"type": "send", "id": id, "room": room, "client_id": cid, "text": text})).await;
        let (f, skipped) = self
            .recv_until(
                |f| matches!(f, ServerFrame::Ack { id: i, .. } | ServerFrame::Error { id: Some(i), .. } if *i == id),
            )
            .await;
        self.unread(skipped);
        match f {
            ServerFrame::Ack { seq, .. } => seq,
            other => panic!("send failed: {other:?}"),
        }
    }

    /// Sends a command and returns the reply naming its id.
    pub async fn request(&mut self, mut v: Value) -> ServerFrame {
        let id = self.new_id();
        v["id"] = json!(id);
        self.send_json(v).await;
        let (f, skipped) = self
            .recv_until(|f| match f {
                ServerFrame::Ack { id: i, .. }
                | ServerFrame::History { id: i, .. }
                | ServerFrame::Resumed { id: i, .. }
                | ServerFrame::Gap { id: i, .. }
                | ServerFrame::Pong { id: i } => *i == id,
                ServerFrame::Error { id: Some(i), .. } => *i == id,
                _ => false,
            })
            .await;
        self.unread(skipped);
        f
    }

    /// Forgets frames read ahead but not yet consumed.
    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// Puts frames back to be read again (in order, before anything newer).
    pub fn unread(&mut self, frames: Vec<ServerFrame>) {
        for f in frames.into_iter().rev() {
            self.pending.push_front(f);
        }
    }

    /// Collects frames for `d` (for "nothing arrives" checks).
    pub async fn drain(&mut self, d: Duration) -> Vec<ServerFrame> {
        let mut out = vec![];
        let deadline = tokio::time::Instant::now() + d;
        while let Some(f) = self.try_recv(deadline.saturating_duration_since(tokio::time::Instant::now())).await {
            out.push(f);
        }
        out
    }
}

/// Text messages (not notices) of a frame list, for room `room`.
pub fn texts_in(frames: &[ServerFrame], room: i64) -> Vec<String> {
    frames
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Message(e) if e.room == room => Some(e.text.clone()),
            _ => None,
        })
        .collect()
}
