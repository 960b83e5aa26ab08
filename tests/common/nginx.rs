//! A real nginx (the Debian package) in front of test nodes, run with THE config of
//! docs/DEPLOY.md: the one `nginx` code block of that page is the template, its `{{…}}`
//! placeholders are filled in here, and nginx runs as a child process with everything
//! (config, throwaway self-signed certificate, pid, logs, temp files) in a temp dir.
//!
//! The nodes' `--public-origin` names nginx's port, so the port is chosen first
//! ([`free_port`]) and given to [`Nginx::start_on`] once the nodes run.
//!
//! Also here: TLS clients that accept the throwaway certificate (an HTTP [`Client`]
//! and a WebSocket, [`TlsWs`]), since nginx only speaks https.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use rtm::ws::protocol::ServerFrame;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream, rustls};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

use super::{Client, WAIT};

/// The page whose `nginx` code block is the config.
pub fn deploy_doc() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/DEPLOY.md")
}

/// The nginx config template: the one fenced `nginx` code block of docs/DEPLOY.md.
pub fn template() -> String {
    let doc = std::fs::read_to_string(deploy_doc()).expect("read docs/DEPLOY.md");
    let blocks = nginx_blocks(&doc);
    assert_eq!(blocks.len(), 1, "docs/DEPLOY.md must hold exactly one ```nginx block (the config the tests use)");
    blocks.into_iter().next().unwrap_or_default()
}

fn nginx_blocks(doc: &str) -> Vec<String> {
    let mut out = vec![];
    let mut cur: Option<String> = None;
    for line in doc.lines() {
        match &mut cur {
            None if line.trim_end() == "```nginx" => cur = Some(String::new()),
            Some(b) if line.trim_end() == "```" => {
                out.push(std::mem::take(b));
                cur = None;
            }
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
            None => {}
        }
    }
    out
}

/// Finds a program: `$env` if set, else `PATH`, else the sbin folders (not on a
/// non-root user's `PATH` on Debian, where nginx lives).
pub fn locate(env: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found (scripts/test installs it; or set {env})"))
}

/// A free loopback port (bound and released; nginx binds it soon after).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe socket");
    l.local_addr().expect("probe address").port()
}

/// The origin browsers use through nginx on `port` (the nodes' `--public-origin`).
pub fn origin(port: u16) -> String {
    format!("https://127.0.0.1:{port}")
}

/// Fills the template's placeholders (see the table in docs/DEPLOY.md).
pub fn render(template: &str, upstreams: &[SocketAddr], port: u16, dir: &Path) -> String {
    let servers: Vec<String> = upstreams.iter().map(|a| format!("server {a};")).collect();
    let dir = dir.display().to_string();
    let user = if is_root() {
        // Debian's nobody has no group of its own.
        let group =
            if std::fs::read_to_string("/etc/group").unwrap_or_default().lines().any(|l| l.starts_with("nogroup:")) {
                "nogroup"
            } else {
                "nobody"
            };
        format!("nobody {group}")
    } else {
        "nobody".to_string()
    };
    let conf = template
        .replace("{{USER}}", &user)
        .replace("{{PID}}", &format!("{dir}/nginx.pid"))
        .replace("{{TMP}}", &dir)
        .replace("{{LOGS}}", &dir)
        .replace("{{UPSTREAMS}}", &servers.join("\n        "))
        .replace("{{LISTEN}}", &format!("127.0.0.1:{port}"))
        .replace("{{SERVER_NAME}}", "127.0.0.1")
        .replace("{{CERT}}", &format!("{dir}/cert.pem"))
        .replace("{{KEY}}", &format!("{dir}/key.pem"));
    assert!(!conf.contains("{{"), "a placeholder of docs/DEPLOY.md is not filled in by the tests:\n{conf}");
    conf
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// nginx in front of some nodes; stopped (with its workers) when dropped.
pub struct Nginx {
    child: Child,
    port: u16,
    pub dir: tempfile::TempDir,
}

impl Nginx {
    /// nginx on a free port in front of `upstreams`.
    pub async fn start(upstreams: &[SocketAddr]) -> Nginx {
        Self::start_on(free_port(), upstreams).await
    }

    /// nginx on `port` (chosen with [`free_port`] before the nodes started, since their
    /// public origin names it) in front of `upstreams`; returns once the port accepts.
    pub async fn start_on(port: u16, upstreams: &[SocketAddr]) -> Nginx {
        let dir = tempfile::Builder::new().prefix("rtm-nginx-").tempdir().expect("tempdir");
        // nginx's workers (nobody, when the master is root) write temp files in here.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod the nginx dir");
        make_cert(dir.path());
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, render(&template(), upstreams, port, dir.path())).expect("write nginx.conf");
        let nginx = locate("RTM_NGINX", "nginx");
        let log = std::fs::File::create(dir.path().join("stderr.log")).expect("create stderr.log");
        let child = Command::new(&nginx)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            // Its own process group: Drop can reach the workers even if the master died.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", nginx.display()));
        let mut n = Nginx { child, port, dir };
        n.wait_ready().await;
        n
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nginx exited at start-up ({status}):\n{}", self.logs());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "nginx did not listen on {}:\n{}", self.port, self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `https://127.0.0.1:PORT` + `path`.
    pub fn https_url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    pub fn origin(&self) -> String {
        origin(self.port)
    }

    /// The user ids of nginx's worker processes (children of the master), once the
    /// master has started them.
    pub async fn worker_uids(&self) -> Vec<u32> {
        let master = self.child.id().to_string();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut uids = vec![];
            for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else { continue };
                let field = |name: &str| {
                    status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next())
                };
                if field("PPid:") == Some(master.as_str())
                    && let Some(uid) = field("Uid:").and_then(|u| u.parse().ok())
                {
                    uids.push(uid);
                }
            }
            if !uids.is_empty() || Instant::now() > deadline {
                return uids;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// nginx's stderr and error log (for failure messages).
    pub fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!("--- stderr\n{}--- error.log\n{}", read("stderr.log"), read("error.log"))
    }

    /// An HTTPS client through nginx, like [`super::TestServer::client`]: a cookie jar,
    /// our Origin, and trust in the throwaway certificate.
    pub fn client(&self) -> Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::ORIGIN, self.origin().parse().expect("origin header"));
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .default_headers(headers)
            .danger_accept_invalid_certs(true)
            .build()
            .expect("client");
        Client { http, base: self.https_url(""), addr: self.addr(), cookie: None, origin: self.origin() }
    }

    /// Signs up `username` through nginx (as [`super::TestServer::user`]).
    pub async fn user(&self, username: &str) -> Client {
        let mut c = self.client();
        let (status, body) = c.register(username).await;
        assert_eq!(status, 201, "sign-up of {username} through nginx failed: {body}");
        c
    }

    /// A WebSocket through nginx (wss) with `client`'s session cookie and Origin.
    pub async fn ws(&self, client: &Client) -> TlsWs {
        let cookie = client.cookie.clone().expect("signed in");
        TlsWs::connect(self.port, Some(&cookie), Some(&client.origin)).await.expect("websocket through nginx")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SIGTERM: nginx's fast shutdown (the master stops its workers, then itself).
        // SAFETY: kill(2) on the pid of our own child (reaped only below).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Still there: kill its process group (master and workers), then reap.
        // SAFETY: the group nginx's master leads (process_group(0) at spawn).
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// A throwaway self-signed certificate for 127.0.0.1 (`cert.pem`, `key.pem` in `dir`).
fn make_cert(dir: &Path) {
    let out = Command::new(locate("RTM_OPENSSL", "openssl"))
        .current_dir(dir)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ])
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl req failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Accepts any server certificate (the tests' throwaway one), still checking that the
/// handshake's signatures are made by it.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// TLS to nginx, trusting its throwaway certificate; ALPN `http/1.1` (a WebSocket
/// handshake is an HTTP/1.1 request).
pub async fn tls_connect(port: u16) -> std::io::Result<TlsStream<TcpStream>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").map_err(std::io::Error::other)?;
    TlsConnector::from(Arc::new(config)).connect(name, tcp).await
}

/// A WebSocket over TLS through nginx: the few operations of [`super::Ws`] the nginx
/// tests need.
pub struct TlsWs {
    pub stream: WebSocketStream<TlsStream<TcpStream>>,
    pending: VecDeque<ServerFrame>,
    next_id: u64,
    pub hello: ServerFrame,
}

impl TlsWs {
    /// Connects to `wss://127.0.0.1:PORT/ws` and reads the hello. Returns the HTTP
    /// status of a refused handshake.
    pub async fn connect(port: u16, cookie: Option<&str>, origin: Option<&str>) -> Result<TlsWs, u16> {
        let mut req = format!("wss://127.0.0.1:{port}/ws").into_client_request().expect("request");
        let h = req.headers_mut();
        if let Some(c) = cookie {
            h.insert("cookie", HeaderValue::from_str(c).expect("cookie"));
        }
        if let Some(o) = origin {
            h.insert("origin", HeaderValue::from_str(o).expect("origin"));
        }
        let tls = tls_connect(port).await.expect("TLS to nginx");
        match tokio_tungstenite::client_async(req, tls).await {
            Ok((stream, _)) => {
                let mut ws = TlsWs {
                    stream,
                    pending: VecDeque::new(),
                    next_id: 0,
                    hello: ServerFrame::Pong { id: String::new() },
                };
                let hello = ws.recv().await;
                assert!(matches!(hello, ServerFrame::Hello { .. }), "first frame must be hello: {hello:?}");
                ws.hello = hello;
                Ok(ws)
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("websocket through nginx failed: {e}"),
        }
    }

    pub fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("r{}", self.next_id)
    }

    pub async fn send_json(&mut self, v: Value) {
        self.stream.send(Message::Text(v.to_string().into())).await.expect("ws send");
    }

    /// The next server frame (batched arrays are split), or panic after `WAIT`.
    pub async fn recv(&mut self) -> ServerFrame {
        self.try_recv(WAIT).await.expect("a frame within the wait")
    }

    /// The next server frame within `d`, if any (None also when the socket closed).
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

    /// Reads until a frame matches `pred`; the frames before it are kept for later.
    pub async fn recv_until(&mut self, mut pred: impl FnMut(&ServerFrame) -> bool) -> ServerFrame {
        let mut skipped = vec![];
        loop {
            let f = self.recv().await;
            if pred(&f) {
                for s in skipped.into_iter().rev() {
                    self.pending.push_front(s);
                }
                return f;
            }
            skipped.push(f);
        }
    }

    /// Sends a message and waits for its ack: returns the seq.
    pub async fn say(&mut self, room: i64, text: &str) -> Option<i64> {
        let id = self.new_id();
        let cid = format!("c-{id}-{room}");
        self.send_json(json!({"type": "send", "id": id, "room": room, "client_id": cid, "text": text})).await;
        let f = self
            .recv_until(
                |f| matches!(f, ServerFrame::Ack { id: i, .. } | ServerFrame::Error { id: Some(i), .. } if *i == id),
            )
            .await;
        match f {
            ServerFrame::Ack { seq, .. } => seq,
            other => panic!("send through nginx failed: {other:?}"),
        }
    }

    /// Waits for the message `text` in `room` (other frames before it are kept).
    pub async fn wait_message(&mut self, room: i64, text: &str) -> ServerFrame {
        self.recv_until(|f| matches!(f, ServerFrame::Message(e) if e.room == room && e.text == text)).await
    }
}
