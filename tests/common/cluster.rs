//! Several nodes of the real server sharing one PostgreSQL database and one Redis (the
//! clustered mode): each node is an in-process `rtm::serve` on its own port, as in
//! `TestServer`, with `--bus redis://…` and a key prefix of its own, so tests running
//! in parallel processes on one Redis never see each other's channels or presence.

use rtm::Config;

use super::{Backend, TestServer, fresh_pg_database};

/// The Redis started by scripts/test.
pub fn redis_url() -> String {
    std::env::var("RTM_TEST_REDIS_URL")
        .expect("RTM_TEST_REDIS_URL is not set: run the suite with scripts/test, which starts Redis")
}

/// A random key prefix for one cluster.
pub fn fresh_prefix() -> String {
    let mut rnd = [0u8; 6];
    getrandom::fill(&mut rnd).expect("random");
    format!("rtmt{}", hex::encode(rnd))
}

pub struct Cluster {
    pub nodes: Vec<TestServer>,
    /// The shared database, bus and prefix (what another node would be started with).
    pub database: String,
    pub bus: String,
    pub prefix: String,
}

impl Cluster {
    /// Starts `n` nodes on one fresh PostgreSQL database and the test Redis.
    pub async fn start(n: usize) -> Self {
        Self::start_with(n, |_| {}).await
    }

    /// Starts `n` nodes; `tweak` may change each node's config (called once per node).
    pub async fn start_with(n: usize, tweak: impl Fn(&mut Config)) -> Self {
        Self::start_on(n, fresh_pg_database().await, redis_url(), tweak).await
    }

    /// Starts `n` nodes on the given database and Redis (a test's own servers).
    pub async fn start_on(n: usize, database: String, bus: String, tweak: impl Fn(&mut Config)) -> Self {
        let prefix = fresh_prefix();
        let mut nodes = Vec::with_capacity(n);
        for _ in 0..n {
            let (d, b, p) = (database.clone(), bus.clone(), prefix.clone());
            nodes.push(
                TestServer::start_with(Backend::Postgres, |c| {
                    c.database = Some(d);
                    c.bus = Some(b);
                    c.bus_prefix = p;
                    tweak(c);
                })
                .await,
            );
        }
        Cluster { nodes, database, bus, prefix }
    }

    /// A connection of the test's own to the cluster's Redis (to publish as a node
    /// would, or to look at what the nodes keep there).
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.bus.as_str())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis")
    }

    /// The config a further node (or a node started as a separate process) would use.
    pub fn node_args(&self) -> Vec<String> {
        vec![
            "--database".into(),
            self.database.clone(),
            "--bus".into(),
            self.bus.clone(),
            "--bus-prefix".into(),
            self.prefix.clone(),
        ]
    }
}

/// A free loopback port (the listener is closed again before it is used).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

async fn wait_for_port(port: u16, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "{what} did not start on port {port}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A redis-server of one test's own (a fault test restarts it; the suite's shared one
/// must stay up for the other tests). Killed by PID when dropped.
pub struct PrivateRedis {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    pub async fn start() -> Self {
        let mut r = PrivateRedis { port: free_port(), dir: tempfile::tempdir().expect("tempdir"), child: None };
        r.up().await;
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the server (again) on its port.
    pub async fn up(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/test installs it)");
        self.child = Some(child);
        wait_for_port(self.port, "redis-server").await;
    }

    /// Kills the server (SIGKILL): everything it held is gone, as after a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A PostgreSQL server of one test's own, which the test may stop and start. Uses the
/// binaries scripts/test found (`RTM_TEST_PG_BIN`) and, as root, runs them as
/// `RTM_TEST_PG_USER` (PostgreSQL refuses to run as root).
pub struct PrivatePg {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    user: Option<String>,
}

impl PrivatePg {
    pub async fn start() -> Self {
        let bin = std::env::var("RTM_TEST_PG_BIN").expect("RTM_TEST_PG_BIN is set by scripts/test").into();
        let user = std::env::var("RTM_TEST_PG_USER").ok().filter(|u| !u.is_empty());
        let dir = tempfile::tempdir().expect("tempdir");
        let pg = PrivatePg { port: free_port(), dir, bin, user };
        std::fs::create_dir(pg.data()).expect("data dir");
        if let Some(u) = &pg.user {
            let status = std::process::Command::new("chown")
                .arg("-R")
                .arg(format!("{u}:"))
                .arg(pg.dir.path())
                .status()
                .expect("chown");
            assert!(status.success());
        }
        let out = pg.run("initdb", &["-D", &pg.data(), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        pg.up().await;
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) -> std::process::Output {
        let exe = self.bin.join(tool);
        let mut cmd = match &self.user {
            Some(u) => {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", u, "--"]).arg(&exe);
                c
            }
            None => std::process::Command::new(&exe),
        };
        cmd.args(args).current_dir(self.dir.path()).output().expect("run a PostgreSQL tool")
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub async fn up(&self) {
        let opts = format!("-k {} -h 127.0.0.1 -p {} -F -c fsync=off", self.dir.path().display(), self.port);
        let log = self.dir.path().join("pg.log").display().to_string();
        let out = self.run("pg_ctl", &["-D", &self.data(), "-o", &opts, "-l", &log, "-w", "start"]);
        assert!(out.status.success(), "pg_ctl start: {}", String::from_utf8_lossy(&out.stderr));
        wait_for_port(self.port, "PostgreSQL").await;
    }

    /// Stops the server at once (connections are cut, as in a crash or a failover).
    pub fn down(&self) {
        let out = self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
        assert!(out.status.success(), "pg_ctl stop: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
    }
}

/// A node of the cluster run as its own `rtm` process (the binary under test), so a
/// test can SIGKILL it: no drain, no goodbye, no presence update.
pub struct NodeProcess {
    pub addr: std::net::SocketAddr,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl NodeProcess {
    /// Starts a node on `cluster`'s database and bus; `extra` are more flags.
    pub async fn start(cluster: &Cluster, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_rtm"))
            .args(cluster.node_args())
            .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(dir.path())
            .args(["--log", "warn", "--auth-rate-per-min", "10000"])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start a node process");
        wait_for_port(port, "the node process").await;
        NodeProcess { addr: ([127, 0, 0, 1], port).into(), child, _dir: dir }
    }

    /// SIGTERM (a graceful stop, as a service manager does it), and wait up to 15 s
    /// for the process to exit; true when it did.
    pub async fn terminate(&mut self) -> bool {
        // SAFETY: kill(2) on the pid of a child we started and have not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        false
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
