//! The server under load: either one already running (`--url`, loopback only) or one
//! this process starts itself (`--spawn`): the `rtm` binary next to this executable,
//! on a free loopback port, with a fresh data directory and limits lifted for
//! benchmarking. A spawned server is stopped (only that child, by its pid) and its
//! directory removed when the [`Target`] is dropped, also on errors and Ctrl-C.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{Common, http, sys};

/// Where and how to reach the server: cheap to clone into client tasks.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Where to connect (always an IPv4 loopback address).
    pub addr: SocketAddr,
    /// `http://host:port`, sent as `Origin` (must equal the server's public origin).
    pub origin: String,
}

/// A server the workloads talk to.
pub struct Target {
    pub ep: Endpoint,
    /// The server's pid, for RSS and CPU readings (spawned, or `--server-pid`).
    pub pid: Option<u32>,
    /// Set when we started the server ourselves.
    spawned: Option<Spawned>,
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

impl Target {
    /// Connects to `--url`, or spawns a server when `--spawn` is given, and waits until
    /// it answers `/healthz`.
    pub async fn open(c: &Common) -> Result<Target> {
        if c.spawn {
            return Self::spawn(c).await;
        }
        let url = url::Url::parse(&c.url).with_context(|| format!("bad --url {}", c.url))?;
        if url.scheme() != "http" {
            bail!("--url must be http://HOST:PORT (the bench speaks plain ws://)");
        }
        let host = url.host_str().context("--url has no host")?.to_string();
        let port = url.port_or_known_default().unwrap_or(80);
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .with_context(|| format!("cannot resolve {host}"))?
            .find(SocketAddr::is_ipv4)
            .with_context(|| format!("{host} has no IPv4 address"))?;
        if !addr.ip().is_loopback() {
            bail!("refusing to load {addr}: rtm-bench only targets loopback (127.0.0.0/8)");
        }
        let origin = format!("http://{host}:{port}");
        let t = Target { ep: Endpoint { addr, origin }, pid: c.server_pid, spawned: None };
        t.wait_ready(Duration::from_secs(10)).await?;
        Ok(t)
    }

    async fn spawn(c: &Common) -> Result<Target> {
        let exe = std::env::current_exe().context("cannot find this executable")?;
        let bin = exe.parent().context("this executable has no directory")?.join("rtm");
        if !bin.exists() {
            bail!("--spawn needs the server binary at {} (cargo build --release --bins)", bin.display());
        }
        let port = sys::free_port()?;
        let addr = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port);
        let dir = std::env::temp_dir().join(format!("rtm-bench-{}-{}", std::process::id(), sys::random_tag()));
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let log = dir.join("server.log");
        let mut args: Vec<std::ffi::OsString> = vec!["--listen".into(), addr.to_string().into(), "--data-dir".into()];
        args.push(dir.clone().into());
        for a in [
            "--rate-messages",
            "1000000000",
            "--auth-rate-per-min",
            "1000000",
            "--log",
            "warn",
            "--shutdown-grace-secs",
            "2",
        ] {
            args.push(a.into());
        }
        if let Some(db) = &c.database {
            args.extend(["--database".into(), db.into()]);
        }
        if let Some(n) = c.outbox_frames {
            args.extend(["--outbox-frames".into(), n.to_string().into()]);
        }
        args.extend(c.server_args.iter().map(Into::into));
        let child = start_child(&bin, &args, &log)?;
        let t = Target {
            ep: Endpoint { addr, origin: format!("http://{addr}") },
            pid: Some(child.id()),
            spawned: Some(Spawned { child, bin, args, dir, log }),
        };
        t.wait_ready(Duration::from_secs(60)).await?;
        Ok(t)
    }

    /// Polls `/healthz` until it answers 200.
    async fn wait_ready(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(r) = http::request(self, "GET", "/healthz", None, None).await
                && r.status == 200
            {
                return Ok(());
            }
            if let Some(s) = &self.spawned
                && let Ok(Some(status)) = process_exited(s.child.id())
            {
                bail!("the server exited ({status}) before it was ready:\n{}", self.log_tail(20).unwrap_or_default());
            }
            if Instant::now() > deadline {
                bail!("the server at {} did not answer /healthz in time", self.addr);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The server's resident memory in KiB, when its pid is known.
    pub fn rss_kib(&self) -> Option<u64> {
        self.pid.and_then(|p| sys::rss_kib(p).ok())
    }

    /// CPU seconds the server has used, when its pid is known.
    pub fn cpu_secs(&self) -> Option<f64> {
        self.pid.and_then(sys::cpu_secs)
    }

    /// The last `n` lines of a spawned server's log.
    pub fn log_tail(&self, n: usize) -> Option<String> {
        let s = self.spawned.as_ref()?;
        let text = std::fs::read_to_string(&s.log).ok()?;
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(n);
        Some(lines[from..].join("\n"))
    }

    /// Lines a spawned server logged (warnings and errors).
    pub fn log_lines(&self) -> Option<usize> {
        let s = self.spawned.as_ref()?;
        Some(std::fs::read_to_string(&s.log).ok()?.lines().count())
    }

    /// Restarts a spawned server on the same port and data (a fresh process: what the
    /// set-up left in its heap is gone). Does nothing for `--url`.
    pub async fn restart(&mut self) -> Result<()> {
        let Some(s) = self.spawned.as_mut() else {
            return Ok(());
        };
        terminate(&mut s.child);
        s.child = start_child(&s.bin, &s.args, &s.log)?;
        self.pid = Some(s.child.id());
        self.wait_ready(Duration::from_secs(60)).await
    }

    /// Stops a spawned server: SIGTERM, up to 5 s to drain, then SIGKILL; removes its
    /// data directory. Does nothing for `--url`.
    pub fn stop(&mut self) {
        let Some(mut s) = self.spawned.take() else {
            return;
        };
        terminate(&mut s.child);
        if std::env::var_os("RTM_BENCH_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&s.dir);
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

/// Stops a child we started: SIGTERM, up to 5 s to drain, then SIGKILL; reaps it.
fn terminate(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill with the pid of a child we started and have not reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
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

impl std::ops::Deref for Target {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.ep
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop();
    }
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
