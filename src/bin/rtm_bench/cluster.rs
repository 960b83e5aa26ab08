//! The shared services of a self-contained several-node run (`--spawn-cluster N`): a
//! throwaway PostgreSQL (initdb + pg_ctl on a free loopback port, data in the run's
//! temporary directory, default settings except `max_connections` and what `--pg-conf`
//! sets) and a throwaway
//! redis-server (free loopback port, no persistence). As root, PostgreSQL runs as the
//! `postgres` (or `rtmtest`) account through `runuser`, like `scripts/test` does.
//! Both are stopped by their pids when the [`Services`] are dropped: PostgreSQL with a
//! fast shutdown (SIGINT to the postmaster), Redis with SIGTERM; SIGKILL after 10 s.

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{redisinfo, sys};

/// The durability settings of the run's PostgreSQL, as the server itself reports them
/// (set once, when the run starts or reaches its PostgreSQL): every result line
/// carries them, because a durable commit waits for the disk and a run's latency tail
/// depends on it.
pub static POSTGRES_SETTINGS: OnceLock<serde_json::Value> = OnceLock::new();

/// The settings that decide when a commit has reached the disk.
const DURABILITY: [&str; 4] = ["fsync", "synchronous_commit", "full_page_writes", "wal_sync_method"];

/// Reads [`DURABILITY`] from the PostgreSQL at `url` into [`POSTGRES_SETTINGS`].
pub async fn record_postgres_settings(url: &str) -> Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::postgres::PgConnection::connect(url).await.context("cannot connect to read its settings")?;
    let mut settings = serde_json::Map::new();
    for name in DURABILITY {
        let value: String = sqlx::query_scalar("SELECT current_setting($1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await
            .with_context(|| format!("cannot read the setting {name}"))?;
        settings.insert(name.into(), value.into());
    }
    let _ = POSTGRES_SETTINGS.set(settings.into());
    Ok(())
}

/// Checks `--pg-conf` values (NAME=VALUE, for `postgres -c`): they end up in one
/// `pg_ctl -o` string, so nothing that string would split or quote is allowed.
fn check_pg_conf(conf: &[String]) -> Result<()> {
    for c in conf {
        let ok = c.split_once('=').is_some_and(|(name, value)| {
            !name.is_empty()
                && name.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_' || ch == '.')
                && !value.is_empty()
                && value.chars().all(|ch| ch.is_ascii_alphanumeric() || "_.-:/".contains(ch))
        });
        if !ok {
            bail!("--pg-conf {c:?}: expected NAME=VALUE, e.g. synchronous_commit=off");
        }
    }
    Ok(())
}

/// PostgreSQL and Redis started for one run.
pub struct Services {
    pub pg: Option<Postgres>,
    pub redis: Option<Redis>,
}

impl Services {
    /// Stops Redis, then PostgreSQL (nodes must be stopped before).
    pub fn stop(&mut self) {
        if let Some(mut r) = self.redis.take() {
            r.stop();
        }
        if let Some(mut p) = self.pg.take() {
            p.stop();
        }
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A PostgreSQL server of our own.
pub struct Postgres {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub url: String,
    /// The postmaster's pid (from `postmaster.pid`).
    pub pid: u32,
    stopped: bool,
}

impl Postgres {
    /// Runs initdb in `dir/pg` and starts the server on a free loopback port, with
    /// `conf` (checked NAME=VALUE settings) on its command line.
    pub fn start(dir: &Path, max_connections: u32, conf: &[String]) -> Result<Postgres> {
        check_pg_conf(conf)?;
        let bin = pg_bin().context("PostgreSQL's initdb and pg_ctl were not found (apt-get install postgresql)")?;
        let user = pg_user()?;
        let data = dir.join("pg");
        let run = dir.join("pg-run");
        std::fs::create_dir_all(&data)?;
        std::fs::create_dir_all(&run)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))?;
        if let Some((_, uid, gid)) = &user {
            for p in [&data, &run] {
                std::os::unix::fs::chown(p, Some(*uid), Some(*gid))
                    .with_context(|| format!("cannot chown {}", p.display()))?;
            }
        }
        let as_pg = |prog: &str| {
            let mut cmd = match &user {
                Some((name, _, _)) => {
                    let mut c = Command::new("runuser");
                    c.args(["-u", name, "--"]).arg(bin.join(prog));
                    c
                }
                None => Command::new(bin.join(prog)),
            };
            cmd.current_dir(dir).stdin(Stdio::null());
            cmd
        };
        let out = as_pg("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
            .output()
            .context("cannot run initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        }
        let port = sys::free_port()?;
        let log = run.join("postgres.log");
        let mut opts = format!("-k {} -h 127.0.0.1 -p {port} -c max_connections={max_connections}", run.display());
        for c in conf {
            opts.push_str(" -c ");
            opts.push_str(c);
        }
        let out = as_pg("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-o", &opts, "-l"])
            .arg(&log)
            .args(["-w", "-t", "60", "start"])
            .stdout(Stdio::null())
            .output()
            .context("cannot run pg_ctl")?;
        if !out.status.success() {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("pg_ctl start failed: {}\n{tail}", String::from_utf8_lossy(&out.stderr));
        }
        let pid = std::fs::read_to_string(data.join("postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse().ok()))
            .context("PostgreSQL started but postmaster.pid has no pid")?;
        Ok(Postgres { url: format!("postgres://postgres@127.0.0.1:{port}/postgres"), pid, stopped: false })
    }

    /// Fast shutdown: SIGINT to the postmaster, SIGKILL if it is still there after 10 s.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        stop_pid(self.pid, libc::SIGINT);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A redis-server of our own.
pub struct Redis {
    pub addr: SocketAddr,
    child: Child,
}

impl Redis {
    /// Starts redis-server on a free loopback port without persistence; waits for PONG.
    pub async fn start(dir: &Path) -> Result<Redis> {
        let port = sys::free_port()?;
        let addr = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port);
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--dir"])
            .arg(dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start redis-server (apt-get install redis-server)")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if redisinfo::ping(addr).await.is_ok() {
                return Ok(Redis { addr, child });
            }
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
                bail!("redis-server exited ({status}):\n{log}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("redis-server did not answer PING within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(&mut self) {
        crate::target::terminate(&mut self.child);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The directory of `initdb` and `pg_ctl`: next to `pg_ctl` on PATH, else the newest
/// `/usr/lib/postgresql/*/bin`.
fn pg_bin() -> Option<PathBuf> {
    let ok = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            let p = d.join("pg_ctl");
            if p.is_file()
                && let Some(dir) = std::fs::canonicalize(&p).ok().and_then(|r| r.parent().map(Path::to_path_buf))
                && ok(&dir)
            {
                return Some(dir);
            }
        }
    }
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, d)| ok(d))
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, d)| d)
}

/// The account PostgreSQL runs as when we are root (it refuses root): `postgres`, or
/// `rtmtest` (which `scripts/test` creates). `None` when we are not root.
fn pg_user() -> Result<Option<(String, u32, u32)>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    for name in ["postgres", "rtmtest"] {
        let c = std::ffi::CString::new(name)?;
        // SAFETY: getpwnam reads a NUL-terminated name; the returned record is only
        // read here, before any other getpw* call.
        let pw = unsafe { libc::getpwnam(c.as_ptr()) };
        if !pw.is_null() {
            // SAFETY: pw is non-null and points to libc's static passwd record.
            let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
            return Ok(Some((name.to_string(), uid, gid)));
        }
    }
    bail!("running as root, PostgreSQL needs an account to run as: create `postgres` (or run scripts/test once)")
}

/// Signals a process that is not our child and waits (polling /proc) until it is gone;
/// SIGKILL after 10 s.
fn stop_pid(pid: u32, sig: i32) {
    let Ok(p) = i32::try_from(pid) else {
        return;
    };
    // SAFETY: kill with a pid we started (read from its own pid file).
    unsafe {
        libc::kill(p, sig);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !crate::target::gone(pid) {
        if Instant::now() > deadline {
            // SAFETY: as above.
            unsafe {
                libc::kill(p, libc::SIGKILL);
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// CPU seconds of a process, its reaped children and its live children (for
/// PostgreSQL: the postmaster and all its backends, the finished ones included, whose
/// time is in the postmaster's `cutime`/`cstime` once reaped).
pub fn tree_cpu_secs(pid: u32) -> Option<f64> {
    let (own, _) = stat_times(pid)?;
    let mut total = own;
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(child) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if child == pid {
                continue;
            }
            if let Some((t, ppid)) = stat_times(child)
                && ppid == pid
            {
                total += t;
            }
        }
    }
    Some(total)
}

/// (utime + stime + cutime + cstime in seconds, parent pid) of a process.
fn stat_times(pid: u32) -> Option<(f64, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ppid: u32 = f.get(1)?.parse().ok()?;
    let sum: f64 = (11..15).map(|i| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)).sum();
    Some((sum / sys::clock_ticks(), ppid))
}

#[cfg(test)]
mod tests {
    use super::check_pg_conf;

    #[test]
    fn pg_conf_takes_name_value_settings_and_nothing_that_would_split_the_command_line() {
        for good in ["synchronous_commit=off", "fsync=off", "shared_buffers=256MB", "wal_sync_method=fdatasync"] {
            assert!(check_pg_conf(&[good.to_string()]).is_ok(), "{good}");
        }
        for bad in ["fsync", "=off", "fsync=", "fsync=off -c x=y", "fsync='off'", "a=b;c", "Fsync=off", "x=\"y\""] {
            assert!(check_pg_conf(&["fsync=on".to_string(), bad.to_string()]).is_err(), "{bad}");
        }
    }
}
