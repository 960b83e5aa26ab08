//! Operating-system helpers for the load generator: raising the open-file limit (one
//! socket is one file), reading a process's resident memory and CPU time from
//! `/proc`, picking a free loopback port, wall-clock microseconds (the send time each
//! message carries), and the loopback source address each client socket binds to so
//! that more than one address's worth of ephemeral ports is available.

use std::{
    net::Ipv4Addr,
    sync::atomic::{AtomicUsize, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns `(soft, hard)` in force.
/// A server spawned afterwards inherits the raised limit.
pub fn raise_nofile() -> Result<(u64, u64)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes into the struct we own and pass by pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        bail!("getrlimit: {}", std::io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit only reads the struct we own and pass by pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            bail!("setrlimit: {}", std::io::Error::last_os_error());
        }
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Resident set size of a process in KiB (`VmRSS` in `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// User + system CPU time a process has used so far, in seconds.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after ')' are plain.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// Clock ticks per second of the times in `/proc/PID/stat`.
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Busy and total CPU ticks of the whole machine (first line of `/proc/stat`).
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().take(8).sum();
    // idle (3) and iowait (4) are not busy.
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Wall-clock time in microseconds since the Unix epoch.
pub fn unix_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// A short random hex tag that keeps names of this run apart from earlier runs.
pub fn random_tag() -> String {
    let mut b = [0u8; 3];
    if getrandom::fill(&mut b).is_err() {
        // Time is unique enough for a name tag if the OS has no randomness for us.
        let t = unix_micros();
        b = [(t >> 16) as u8, (t >> 8) as u8, t as u8];
    }
    hex::encode(b)
}

static NEXT_SOURCE: AtomicUsize = AtomicUsize::new(0);

/// The next client source address, cycling 127.0.0.2 ..= 127.0.0.254: each address has
/// its own ~28k ephemeral ports towards the server.
pub fn next_source_ip() -> Ipv4Addr {
    let n = NEXT_SOURCE.fetch_add(1, Ordering::Relaxed);
    Ipv4Addr::new(127, 0, 0, 2 + (n % 253) as u8)
}

/// Starts the source-address cycle at `n` (child processes start apart).
pub fn set_source_offset(n: usize) {
    NEXT_SOURCE.store(n, Ordering::Relaxed);
}
