//! The servers under load: one or several already running (`--url`, repeatable,
//! loopback only), one this process starts itself (`--spawn`), or a whole cluster it
//! starts itself (`--spawn-cluster N`: a throwaway PostgreSQL and redis-server, see
//! `cluster.rs`, then N `rtm` nodes sharing them). A started server is the `rtm`
//! binary next to this executable, on a free loopback port, with a fresh data
//! directory and limits lifted for benchmarking (with `--history N`, N messages are
//! stored in its database before it starts: `history.rs`). Everything started is
//! stopped (only those children, by their pids) and its directory removed when the
//! [`Target`] is dropped, also on errors and Ctrl-C.
//!
//! Node 0 is where set-up starts and where the workloads put their senders; with
//! several nodes the receivers go round-robin to the other nodes
//! ([`Target::receiver_node`]), so every measured delivery crosses nodes.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    Common,
    cluster::{self, Postgres, Redis, Services},
    history, http, redisinfo, sys,
};

/// Where and how to reach a server: cheap to clone into client tasks.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Where to connect (always an IPv4 loopback address).
    pub addr: SocketAddr,
    /// `http://host:port`, sent as `Origin` (must equal the server's public origin).
    pub origin: String,
}

/// One server process (a node) of the target.
pub struct Node {
    pub ep: Endpoint,
    /// The server's pid, for RSS and CPU readings (spawned, or `--server-pid`).
    pub pid: Option<u32>,
    /// Set when we started the server ourselves.
    spawned: Option<Spawned>,
}

/// The servers the workloads talk to, and the services they share.
pub struct Target {
    nodes: Vec<Node>,
    /// Redis of the cluster (spawned, or `--redis`), for INFO and CPU readings.
    pub redis_addr: Option<SocketAddr>,
    pub redis_pid: Option<u32>,
    /// The postmaster of a spawned PostgreSQL (its CPU includes its backends').
    pub postgres_pid: Option<u32>,
    /// PostgreSQL and Redis of `--spawn-cluster`; stopped after the nodes.
    services: Option<Services>,
    /// The directory of a spawned cluster (removed at the end).
    dir: Option<PathBuf>,
}

/// A server process we started, and the files it uses.
struct Spawned {
    child: Child,
    /// The server binary and its arguments, for a restart.
    bin: PathBuf,
    args: Vec<std::ffi::OsString>,
    /// Temporary data directory (SQLite file); removed at the end.
    dir: PathBuf,
    /// The server's stderr (it logs at `warn`), kept in `dir`.
    log: PathBuf,
}

/// The arguments every server we start gets: benchmark limits, quiet logs (unless
/// `--server-arg=--log=…` asks for others: the server takes `--log` once).
fn base_args(listen: SocketAddr, dir: &std::path::Path, server_args: &[String]) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec!["--listen".into(), listen.to_string().into(), "--data-dir".into()];
    args.push(dir.into());
    for a in [
        "--rate-messages",
        "1000000000",
        "--auth-rate-per-min",
        "1000000",
        // `dm` puts ~100 idle connections on one account; the server's default cap
        // (50 sockets an account) would refuse half of them.
        "--max-sockets-per-user",
        "0",
        "--shutdown-grace-secs",
        "2",
    ] {
        args.push(a.into());
    }
    if !server_args.iter().any(|a| a == "--log" || a.starts_with("--log=")) {
        args.extend(["--log".into(), "warn".into()]);
    }
    args
}

/// `--history N` and its rooms and accounts, checked; `None` without a history.
fn history_spec(c: &Common) -> Result<Option<history::Spec>> {
    if c.history == 0 {
        return Ok(None);
    }
    if c.history > 10_000_000 || c.history_rooms == 0 || c.history_accounts == 0 {
        bail!("--history must be at most 10000000, --history-rooms and --history-accounts at least 1");
    }
    Ok(Some(history::Spec { messages: c.history, rooms: c.history_rooms, authors: c.history_accounts, batch: 5000 }))
}

/// The `rtm` binary next to this executable.
fn server_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let bin = exe.parent().context("this executable has no directory")?.join("rtm");
    if !bin.exists() {
        bail!("--spawn needs the server binary at {} (cargo build --release --bins)", bin.display());
    }
    Ok(bin)
}

/// `n` distinct free loopback ports.
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let mut ports: Vec<u16> = Vec::with_capacity(n);
    let mut tries = 0;
    while ports.len() < n {
        let p = sys::free_port()?;
        if !ports.contains(&p) {
            ports.push(p);
        }
        tries += 1;
        if tries > 100 * n {
            bail!("cannot find {n} free loopback ports");
        }
    }
    Ok(ports)
}

/// A loopback `host:port` from a URL (`http://…` or `redis://…`).
async fn loopback_addr(url: &str, what: &str) -> Result<(SocketAddr, String, u16)> {
    let u = url::Url::parse(url).with_context(|| format!("bad {what} {url}"))?;
    let host = u.host_str().with_context(|| format!("{what} {url} has no host"))?.to_string();
    let port = u.port_or_known_default().unwrap_or(if u.scheme() == "redis" { 6379 } else { 80 });
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .with_context(|| format!("cannot resolve {host}"))?
        .find(SocketAddr::is_ipv4)
        .with_context(|| format!("{host} has no IPv4 address"))?;
    if !addr.ip().is_loopback() {
        bail!("refusing to load {addr}: rtm-bench only targets loopback (127.0.0.0/8)");
    }
    Ok((addr, host, port))
}

impl Target {
    /// Connects to every `--url`, or spawns a server (`--spawn`) or a cluster
    /// (`--spawn-cluster`), and waits until every node answers `/healthz`.
    pub async fn open(c: &Common) -> Result<Target> {
        // Only the throwaway PostgreSQL of --spawn-cluster takes settings
        // (`Postgres::start` checks their form).
        if !c.pg_conf.is_empty() && (c.spawn_cluster.is_none() || c.database.is_some()) {
            bail!("--pg-conf sets up the PostgreSQL of --spawn-cluster (without --database)");
        }
        if let Some(n) = c.spawn_cluster {
            return Self::spawn_cluster(c, n).await;
        }
        if c.spawn {
            return Self::spawn(c).await;
        }
        if c.url.is_empty() {
            bail!("give --url (repeatable), --spawn or --spawn-cluster N");
        }
        if c.history > 0 {
            bail!("--history stores messages before the server starts: give --spawn or --spawn-cluster");
        }
        let mut nodes = Vec::with_capacity(c.url.len());
        for (i, u) in c.url.iter().enumerate() {
            if !u.starts_with("http://") {
                bail!("--url must be http://HOST:PORT (the bench speaks plain ws://)");
            }
            let (addr, host, port) = loopback_addr(u, "--url").await?;
            let origin = format!("http://{host}:{port}");
            nodes.push(Node { ep: Endpoint { addr, origin }, pid: c.server_pid.get(i).copied(), spawned: None });
        }
        let (mut redis_addr, mut redis_pid) = (None, None);
        if let Some(r) = &c.redis {
            let (addr, _, _) = loopback_addr(r, "--redis").await?;
            let info = redisinfo::info(addr).await.with_context(|| format!("cannot read INFO from {addr}"))?;
            redis_pid = info.get("process_id").and_then(|p| p.parse().ok());
            redis_addr = Some(addr);
        }
        let t = Target { nodes, redis_addr, redis_pid, postgres_pid: None, services: None, dir: None };
        for k in 0..t.nodes.len() {
            t.wait_ready(k, Duration::from_secs(10)).await?;
        }
        Ok(t)
    }

    /// A target with no nodes yet that owns a new data directory under the temp dir
    /// (removed when it stops), so whatever fails or is interrupted before the nodes
    /// run (a `--history` fill: Ctrl-C, `--max-runtime`) leaves nothing in /tmp.
    fn in_new_dir(services: Option<Services>) -> Result<(Target, PathBuf)> {
        let dir = std::env::temp_dir().join(format!("rtm-bench-{}-{}", std::process::id(), sys::random_tag()));
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let t = Target {
            nodes: Vec::new(),
            redis_addr: None,
            redis_pid: None,
            postgres_pid: None,
            services,
            dir: Some(dir.clone()),
        };
        Ok((t, dir))
    }

    async fn spawn(c: &Common) -> Result<Target> {
        let bin = server_bin()?;
        let history = history_spec(c)?;
        let port = sys::free_port()?;
        let addr = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port);
        let (mut t, dir) = Self::in_new_dir(None)?;
        let log = dir.join("server.log");
        if let Some(spec) = &history {
            // The server's own default database when none is given.
            let url = c.database.clone().unwrap_or_else(|| format!("sqlite:{}", dir.join("rtm.db").display()));
            history::fill(&url, spec, c.quiet).await?;
        }
        if let Some(db) = c.database.as_deref().filter(|d| d.starts_with("postgres")) {
            cluster::record_postgres_settings(db).await?;
        }
        let mut args = base_args(addr, &dir, &c.server_args);
        if let Some(db) = &c.database {
            args.extend(["--database".into(), db.into()]);
        }
        if let Some(n) = c.outbox_frames {
            args.extend(["--outbox-frames".into(), n.to_string().into()]);
        }
        args.extend(c.server_args.iter().map(Into::into));
        let child = start_child(&bin, &args, &log)?;
        t.nodes.push(Node {
            ep: Endpoint { addr, origin: format!("http://{addr}") },
            pid: Some(child.id()),
            spawned: Some(Spawned { child, bin, args, dir, log }),
        });
        t.wait_ready(0, Duration::from_secs(60)).await?;
        Ok(t)
    }

    /// PostgreSQL (unless `--database` names one), redis-server, then `n` nodes with
    /// `--database … --bus redis://… --bus-prefix rtmbench`; node 0 first (it runs the
    /// migrations), the others once it answers.
    async fn spawn_cluster(c: &Common, n: usize) -> Result<Target> {
        if n == 0 {
            bail!("--spawn-cluster needs at least 1 node");
        }
        let bin = server_bin()?;
        let history = history_spec(c)?;
        let (mut t, dir) = Self::in_new_dir(Some(Services { pg: None, redis: None }))?;
        let database = match &c.database {
            Some(db) => db.clone(),
            None => {
                let max_connections = (40 * n as u32).max(100);
                let (d, conf) = (dir.clone(), c.pg_conf.clone());
                let pg = tokio::task::spawn_blocking(move || Postgres::start(&d, max_connections, &conf)).await??;
                t.postgres_pid = Some(pg.pid);
                let url = pg.url.clone();
                if let Some(s) = t.services.as_mut() {
                    s.pg = Some(pg);
                }
                url
            }
        };
        if database.starts_with("postgres") {
            cluster::record_postgres_settings(&database).await?;
        }
        if let Some(spec) = &history {
            history::fill(&database, spec, c.quiet).await?;
        }
        let redis = Redis::start(&dir).await?;
        let bus = redis.url();
        t.redis_addr = Some(redis.addr);
        t.redis_pid = Some(redis.pid());
        if let Some(s) = t.services.as_mut() {
            s.redis = Some(redis);
        }
        let ports = free_ports(n)?;
        for (k, port) in ports.into_iter().enumerate() {
            let addr = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port);
            let node_dir = dir.join(format!("node{k}"));
            std::fs::create_dir_all(&node_dir)?;
            let log = node_dir.join("server.log");
            let mut args = base_args(addr, &node_dir, &c.server_args);
            args.extend(["--database".into(), database.clone().into(), "--bus".into(), bus.clone().into()]);
            args.extend(["--bus-prefix".into(), "rtmbench".into()]);
            if let Some(f) = c.outbox_frames {
                args.extend(["--outbox-frames".into(), f.to_string().into()]);
            }
            args.extend(c.server_args.iter().map(Into::into));
            let child = start_child(&bin, &args, &log)?;
            t.nodes.push(Node {
                ep: Endpoint { addr, origin: format!("http://{addr}") },
                pid: Some(child.id()),
                spawned: Some(Spawned { child, bin: bin.clone(), args, dir: node_dir, log }),
            });
            if k == 0 {
                t.wait_ready(0, Duration::from_secs(60)).await?;
            }
        }
        for k in 1..n {
            t.wait_ready(k, Duration::from_secs(60)).await?;
        }
        Ok(t)
    }

    /// Polls node `k`'s `/healthz` until it answers 200.
    async fn wait_ready(&self, k: usize, within: Duration) -> Result<()> {
        let node = &self.nodes[k];
        let deadline = Instant::now() + within;
        loop {
            if let Ok(r) = http::request(&node.ep, "GET", "/healthz", None, None).await
                && r.status == 200
            {
                return Ok(());
            }
            if let Some(s) = &node.spawned
                && let Ok(Some(status)) = process_exited(s.child.id())
            {
                bail!(
                    "the server {} exited ({status}) before it was ready:\n{}",
                    node.ep.addr,
                    self.log_tail(20).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                bail!("the server at {} did not answer /healthz in time", node.ep.addr);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The nodes, node 0 first.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Node `k`'s endpoint (`k` wraps around).
    pub fn node_ep(&self, k: usize) -> &Endpoint {
        &self.nodes[k % self.nodes.len()].ep
    }

    /// Whether there is more than one node (senders and receivers are placed apart).
    pub fn several(&self) -> bool {
        self.nodes.len() > 1
    }

    /// The node of the `k`-th receiving connection: the other nodes in turn when there
    /// are several, node 0 when there is one.
    pub fn receiver_node(&self, k: usize) -> usize {
        match self.nodes.len() {
            0 | 1 => 0,
            n => 1 + k % (n - 1),
        }
    }

    /// The pids of the nodes whose pid is known.
    pub fn node_pids(&self) -> Vec<u32> {
        self.nodes.iter().filter_map(|n| n.pid).collect()
    }

    /// The server's resident memory in KiB (summed over the nodes), when every node's
    /// pid is known.
    pub fn rss_kib(&self) -> Option<u64> {
        self.nodes.iter().map(|n| n.pid.and_then(|p| sys::rss_kib(p).ok())).sum()
    }

    /// The last `n` lines of each spawned server's log (prefixed by node with several).
    pub fn log_tail(&self, n: usize) -> Option<String> {
        let mut out = Vec::new();
        for (k, node) in self.nodes.iter().enumerate() {
            let Some(s) = &node.spawned else { continue };
            let Ok(text) = std::fs::read_to_string(&s.log) else { continue };
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(n);
            for l in &lines[from..] {
                out.push(if self.several() { format!("node {k}: {l}") } else { l.to_string() });
            }
        }
        (!out.is_empty() || self.nodes.iter().any(|n| n.spawned.is_some())).then(|| out.join("\n"))
    }

    /// Lines the spawned servers logged (warnings and errors).
    pub fn log_lines(&self) -> Option<usize> {
        let mut total = None;
        for node in &self.nodes {
            let Some(s) = &node.spawned else { continue };
            let lines = std::fs::read_to_string(&s.log).ok()?.lines().count();
            *total.get_or_insert(0) += lines;
        }
        total
    }

    /// Restarts the spawned servers on the same ports and data (fresh processes: what
    /// the set-up left in their heaps is gone). Does nothing for `--url`.
    pub async fn restart(&mut self) -> Result<()> {
        for k in 0..self.nodes.len() {
            let node = &mut self.nodes[k];
            let Some(s) = node.spawned.as_mut() else {
                continue;
            };
            terminate(&mut s.child);
            s.child = start_child(&s.bin, &s.args, &s.log)?;
            node.pid = Some(s.child.id());
            self.wait_ready(k, Duration::from_secs(60)).await?;
        }
        Ok(())
    }

    /// Stops the spawned servers (SIGTERM to all, up to 5 s each to drain, then
    /// SIGKILL), then a spawned Redis and PostgreSQL; removes their directories. Does
    /// nothing for `--url`.
    pub fn stop(&mut self) {
        let mut stopping: Vec<Spawned> = self.nodes.iter_mut().filter_map(|n| n.spawned.take()).collect();
        for s in &stopping {
            signal(&s.child, libc::SIGTERM);
        }
        for s in &mut stopping {
            terminate(&mut s.child);
        }
        if let Some(mut services) = self.services.take() {
            services.stop();
        }
        if std::env::var_os("RTM_BENCH_KEEP").is_none() {
            for s in &stopping {
                let _ = std::fs::remove_dir_all(&s.dir);
            }
            if let Some(d) = self.dir.take() {
                let _ = std::fs::remove_dir_all(d);
            }
        }
    }
}

/// Starts the server binary, its stderr appended to `log`, without the caller's
/// `RTM_*` settings (they are meant for someone else's server).
fn start_child(bin: &std::path::Path, args: &[std::ffi::OsString], log: &std::path::Path) -> Result<Child> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let mut cmd = Command::new(bin);
    cmd.args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("RTM_") {
            cmd.env_remove(k);
        }
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::from(log_file));
    cmd.spawn().with_context(|| format!("cannot start {}", bin.display()))
}

/// Sends a signal to a child we started and have not reaped yet.
fn signal(child: &Child, sig: i32) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill with the pid of a child we started and have not reaped yet.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Stops a child we started: SIGTERM, up to 5 s to drain, then SIGKILL; reaps it.
pub fn terminate(child: &mut Child) {
    signal(child, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
        }
    }
}

/// A target is used as node 0's endpoint where one node is meant (set-up calls).
impl std::ops::Deref for Target {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.nodes[0].ep
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether a process is gone (or a zombie): for processes that are not our children.
pub fn gone(pid: u32) -> bool {
    !matches!(process_exited(pid), Ok(None))
}

/// Whether a child has exited, without reaping it (reads `/proc/PID/stat` state `Z`).
fn process_exited(pid: u32) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s.rfind(')').and_then(|i| s.get(i + 2..i + 3)).unwrap_or("?");
            Ok((state == "Z" || state == "X").then(|| "exited".to_string()))
        }
        Err(_) => Ok(Some("gone".to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bench's `--log warn` gives way to a log filter given with --server-arg
    /// (the server refuses `--log` twice); `--log-format` is not a log filter.
    #[test]
    fn a_server_log_filter_replaces_the_default() {
        let addr = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), 1);
        let dir = std::path::Path::new("/tmp/x");
        let logs = |extra: &[&str]| {
            let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
            let args = base_args(addr, dir, &extra);
            args.iter().filter(|a| *a == "--log").count()
        };
        assert_eq!(logs(&[]), 1);
        assert_eq!(logs(&["--log-format=json"]), 1);
        assert_eq!(logs(&["--log=warn,sqlx::query=debug"]), 0);
        assert_eq!(logs(&["--log", "debug"]), 0);
    }
}
