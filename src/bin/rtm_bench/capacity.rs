//! `capacity`: open N idle, authenticated WebSocket connections, each subscribed to a
//! room of M members (a user's connections hear that user's room), and hold them.
//! At each step (e.g. 1000,5000,10000,19000) the server's RSS is read and reported
//! as KiB per connection over the RSS before any connection; at the end every
//! connection must answer a ping. Errors must be 0.
//!
//! One process may hold at most RLIMIT_NOFILE (20,000 here) sockets, so `--procs K`
//! spreads the connections over K child rtm-bench processes: the parent signs up the
//! users and makes the rooms, writes the session cookies to a file, and drives the
//! children step by step over their stdin/stdout (each prints a line when it reached
//! its share of a step and waits for "go"), reading the server's RSS in between.
//!
//! With several nodes the connections go to the nodes in turn (connection `g` to node
//! `g mod nodes`, in the children too) and the RSS is the sum over the nodes.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, Result, bail};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use rtm::ws::protocol::ClientFrame;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, ChildStdout},
    task::JoinHandle,
    time::Instant,
};

use crate::{
    Common,
    fanout::opt,
    load::{self, Shared, Sink},
    report::{self, Outcome},
    setup,
    stats::Counters,
    sys,
    target::{Endpoint, Target},
    wsconn,
};

#[derive(Args, Debug, Clone)]
pub struct CapacityArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connections to open in total.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Connection counts at which to read the server's RSS (ascending; the total is
    /// always the last step).
    #[arg(long, value_delimiter = ',')]
    pub steps: Vec<usize>,
    /// Users per room.
    #[arg(long, default_value_t = 50)]
    pub room_size: usize,
    /// Seconds to let the server settle before each RSS reading.
    #[arg(long, default_value_t = 2.0)]
    pub settle: f64,
    /// Child rtm-bench processes that hold the connections (for more than one
    /// process's open-file limit).
    #[arg(long, default_value_t = 1)]
    pub procs: usize,
    /// With --spawn: do not restart the server between the set-up and the connections.
    /// (By default it is restarted on the same data, so that heap memory the sign-ups
    /// left behind — password hashing takes 19 MiB per hash — neither inflates nor
    /// hides the per-connection figure.)
    #[arg(long)]
    pub no_restart: bool,
    /// Internal: run as a child with the users in this file.
    #[arg(long, hide = true)]
    pub child_setup: Option<PathBuf>,
    /// Internal: the child's first global connection index.
    #[arg(long, hide = true, default_value_t = 0)]
    pub child_offset: usize,
}

/// What the parent hands its children.
#[derive(Serialize, Deserialize)]
struct ChildSetup {
    cookies: Vec<String>,
}

/// One RSS reading.
#[derive(Debug, Serialize)]
struct StepReading {
    connections: usize,
    open: u64,
    rss_kib: Option<u64>,
    kib_per_connection: Option<f64>,
    /// Seconds spent opening this step's new connections.
    connect_s: f64,
}

/// The connections a process holds.
struct Holder {
    /// The nodes: global connection `g` goes to node `g % len`.
    eps: Vec<Endpoint>,
    cookies: Vec<String>,
    offset: usize,
    sinks: Vec<Sink>,
    readers: Vec<JoinHandle<()>>,
    sh: Arc<Shared>,
}

impl Holder {
    /// Opens connections until `n` are held; connection `g` (global index) belongs
    /// to user `g % users`.
    async fn grow_to(&mut self, n: usize, concurrency: usize, quiet: bool) {
        let from = self.sinks.len() + self.errors_at_open();
        if n <= from {
            return;
        }
        let users = self.cookies.len().max(1);
        let cookies: Vec<String> = (from..n).map(|i| self.cookies[(self.offset + i) % users].clone()).collect();
        let pb = report::bar(cookies.len() as u64, &format!("connecting to {n}"), quiet);
        let (sh, sinks, readers) = (&self.sh, &mut self.sinks, &mut self.readers);
        let (eps, base) = (&self.eps, self.offset + from);
        load::connect_many(
            |j| &eps[(base + j) % eps.len()],
            &cookies,
            concurrency,
            &pb,
            &sh.errors,
            |j, ws, _| {
                let (sink, source) = ws.split();
                readers.push(tokio::spawn(load::receive(source, from + j, load::Record::All, sh.clone())));
                sinks.push(sink);
            },
        )
        .await;
        pb.finish_and_clear();
        // Reader tasks count themselves open when they first run.
        let deadline = Instant::now() + Duration::from_secs(2);
        while (Counters::get(&self.sh.counters.open) as usize) < self.sinks.len() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Connections that failed to open (they still count as attempted).
    fn errors_at_open(&self) -> usize {
        self.sh.errors.count() as usize
    }

    /// Pings every connection; returns how many answered within `within`.
    async fn ping_all(&mut self, within: Duration) -> u64 {
        let ping = wsconn::frame(&ClientFrame::Ping { id: "cap".into() });
        for (i, s) in self.sinks.iter_mut().enumerate() {
            if let Err(e) = s.send(ping.clone()).await {
                self.sh.errors.add(format!("connection {i}: ping failed: {e}"));
            }
        }
        let deadline = Instant::now() + within;
        while (Counters::get(&self.sh.counters.pongs) as usize) < self.sinks.len() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Counters::get(&self.sh.counters.pongs)
    }

    fn close(self) {
        self.sh.errors.set_stopping(true);
        drop(self.sinks);
        for r in &self.readers {
            r.abort();
        }
    }
}

/// The step list: ascending, at most the total, ending with the total.
fn plan_steps(steps: &[usize], total: usize) -> Vec<usize> {
    let mut v: Vec<usize> = steps.iter().copied().filter(|&s| s > 0 && s < total).collect();
    v.sort_unstable();
    v.dedup();
    v.push(total);
    v
}

/// This child's share of a global count.
fn share(n: usize, procs: usize, k: usize) -> usize {
    n / procs + usize::from(k < n % procs)
}

pub async fn run(a: CapacityArgs) -> Result<Outcome> {
    if a.child_setup.is_some() {
        return run_child(a).await;
    }
    let c = &a.common;
    if a.connections == 0 || a.room_size == 0 || a.procs == 0 {
        bail!("need --connections, --room-size and --procs ≥ 1");
    }
    let steps = plan_steps(&a.steps, a.connections);
    let settle = Duration::from_secs_f64(a.settle);
    let mut t = Target::open(c).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = t.rss_kib();
    let tag = sys::random_tag();
    let n_users = c.users.unwrap_or(a.connections.min(500)).clamp(1, a.connections);
    let users = setup::register_many(&t, &tag, 1 + n_users, c.quiet).await?;
    let n_rooms = n_users.div_ceil(a.room_size);
    let mut rooms = Vec::with_capacity(n_rooms);
    for r in 0..n_rooms {
        rooms.push(setup::create_room(&t, &users[0], &format!("bench {tag} c{r}"), 1000).await?);
    }
    let joins: Vec<(usize, i64)> = (0..n_users).map(|u| (1 + u, rooms[u / a.room_size])).collect();
    setup::join_many(&t, &users, &joins, c.quiet).await?;
    let cookies: Vec<String> = users[1..].iter().map(|u| u.cookie.clone()).collect();
    tokio::time::sleep(settle).await;
    let rss_after_setup = t.rss_kib();
    let restarted = c.spawn && !a.no_restart;
    if restarted {
        t.restart().await?;
        tokio::time::sleep(settle).await;
    }
    let rss_before = t.rss_kib();

    let started = Instant::now();
    let mut readings = Vec::new();
    let (pongs, errors, open_end, samples) = if a.procs == 1 {
        let mut h = Holder {
            eps: t.nodes().iter().map(|n| n.ep.clone()).collect(),
            cookies,
            offset: 0,
            sinks: Vec::new(),
            readers: Vec::new(),
            sh: Shared::new(),
        };
        for &n in &steps {
            let t0 = Instant::now();
            h.grow_to(n, c.connect_concurrency, c.quiet).await;
            let connect_s = t0.elapsed().as_secs_f64();
            tokio::time::sleep(settle).await;
            readings.push(reading(&t, n, Counters::get(&h.sh.counters.open), rss_before, connect_s));
        }
        let pongs = h.ping_all(Duration::from_secs(30)).await;
        let open = Counters::get(&h.sh.counters.open);
        let (errors, samples) = (h.sh.errors.count(), h.sh.errors.samples());
        h.close();
        (pongs, errors, open, samples)
    } else {
        drive_children(&t, &a, &steps, cookies, rss_before, settle, &mut readings).await?
    };
    let elapsed = started.elapsed().as_secs_f64();
    let log_tail = t.log_tail(10);
    t.stop();

    let missing_pongs = (a.connections as u64).saturating_sub(pongs);
    let ok = errors == 0 && missing_pongs == 0;
    let mut human = vec![
        format!(
            "{} connections of {} users in {} rooms of ≤ {} members, {} process(es)",
            a.connections, n_users, n_rooms, a.room_size, a.procs
        ),
        format!(
            "server RSS idle {} KiB; after sign-ups {} KiB; before connections {} KiB{}",
            opt(rss_idle),
            opt(rss_after_setup),
            opt(rss_before),
            if restarted { " (restarted after the set-up)" } else { "" }
        ),
        format!("{:>12} {:>8} {:>12} {:>10} {:>10}", "connections", "open", "RSS KiB", "KiB/conn", "connect s"),
    ];
    for r in &readings {
        human.push(format!(
            "{:>12} {:>8} {:>12} {:>10} {:>10.1}",
            r.connections,
            r.open,
            opt(r.rss_kib),
            opt(r.kib_per_connection),
            r.connect_s
        ));
    }
    human.push(format!("pongs {pongs}/{}, errors {errors}, open at the end {open_end}, {elapsed:.1} s", a.connections));
    for e in &samples {
        human.push(format!("error: {e}"));
    }
    if !ok && let Some(tail) = log_tail.filter(|s| !s.is_empty()) {
        human.push(format!("server log (last lines):\n{tail}"));
    }
    Ok(Outcome {
        workload: "capacity",
        params: json!({
            "connections": a.connections, "steps": steps, "users": n_users,
            "rooms": n_rooms, "room_size": a.room_size, "procs": a.procs,
            "spawn": c.spawn, "database": c.database.as_deref().map(rtm::config::redact_url),
        }),
        results: json!({
            "rss_idle_kib": rss_idle, "rss_after_setup_kib": rss_after_setup, "restarted": restarted,
            "rss_before_kib": rss_before, "steps": readings,
            "pongs": pongs, "missing_pongs": missing_pongs, "errors": errors,
            "error_samples": samples, "elapsed_s": report::r3(elapsed),
        }),
        ok,
        human,
    })
}

fn reading(t: &Target, n: usize, open: u64, before: Option<u64>, connect_s: f64) -> StepReading {
    let rss = t.rss_kib();
    StepReading {
        connections: n,
        open,
        rss_kib: rss,
        kib_per_connection: rss.zip(before).map(|(r, b)| report::r3((r as f64 - b as f64) / n as f64)),
        connect_s: report::r3(connect_s),
    }
}

/// A child process and its pipes.
struct ChildProc {
    child: Child,
    stdin: ChildStdin,
    lines: tokio::io::Lines<BufReader<ChildStdout>>,
}

impl ChildProc {
    async fn line(&mut self, within: Duration) -> Result<serde_json::Value> {
        loop {
            let l = tokio::time::timeout(within, self.lines.next_line())
                .await
                .context("a child process did not report in time")??
                .context("a child process ended early")?;
            // Only JSON lines are protocol; anything else (a summary) is skipped.
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&l) {
                return Ok(v);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn drive_children(
    t: &Target,
    a: &CapacityArgs,
    steps: &[usize],
    cookies: Vec<String>,
    rss_before: Option<u64>,
    settle: Duration,
    readings: &mut Vec<StepReading>,
) -> Result<(u64, u64, u64, Vec<String>)> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let file = std::env::temp_dir().join(format!("rtm-bench-cap-{}-{}.json", std::process::id(), sys::random_tag()));
    std::fs::write(&file, serde_json::to_vec(&ChildSetup { cookies })?)
        .with_context(|| format!("cannot write {}", file.display()))?;
    let k = a.procs;
    let mut children = Vec::with_capacity(k);
    let mut offset = 0;
    for i in 0..k {
        let n_i = share(a.connections, k, i);
        let steps_i: Vec<String> = steps.iter().map(|&s| share(s, k, i).to_string()).collect();
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.arg("capacity");
        for n in t.nodes() {
            cmd.args(["--url", &n.ep.origin]);
        }
        cmd.args(["--connections", &n_i.to_string()])
            .args(["--steps", &steps_i.join(",")])
            .args(["--connect-concurrency", &(a.common.connect_concurrency / k).max(1).to_string()])
            .arg("--child-setup")
            .arg(&file)
            .args(["--child-offset", &offset.to_string()])
            .args(["--json", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("cannot start a child rtm-bench")?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("child pipes missing");
        };
        children.push(ChildProc { child, stdin, lines: BufReader::new(stdout).lines() });
        offset += n_i;
    }
    let wait = Duration::from_secs(600);
    for &n in steps {
        let t0 = Instant::now();
        let mut open = 0;
        for ch in &mut children {
            let v = ch.line(wait).await?;
            open += v["open"].as_u64().unwrap_or(0);
        }
        let connect_s = t0.elapsed().as_secs_f64();
        tokio::time::sleep(settle).await;
        readings.push(reading(t, n, open, rss_before, connect_s));
        for ch in &mut children {
            ch.stdin.write_all(b"go\n").await?;
            ch.stdin.flush().await?;
        }
    }
    let (mut pongs, mut errors, mut open, mut samples) = (0, 0, 0, Vec::new());
    for ch in &mut children {
        let v = ch.line(Duration::from_secs(120)).await?;
        let r = &v["results"];
        pongs += r["pongs"].as_u64().unwrap_or(0);
        errors += r["errors"].as_u64().unwrap_or(1);
        open += r["open"].as_u64().unwrap_or(0);
        if let Some(s) = r["error_samples"].as_array() {
            samples.extend(s.iter().filter_map(|x| x.as_str().map(str::to_string)));
        }
    }
    for mut ch in children {
        drop(ch.stdin);
        if tokio::time::timeout(Duration::from_secs(20), ch.child.wait()).await.is_err() {
            let _ = ch.child.kill().await;
        }
    }
    let _ = std::fs::remove_file(&file);
    Ok((pongs, errors, open, samples))
}

/// A child: holds its share of the connections, reporting after each step and waiting
/// for "go" on stdin; pings everything at the end.
async fn run_child(a: CapacityArgs) -> Result<Outcome> {
    let c = &a.common;
    let path = a.child_setup.clone().context("no setup file")?;
    let setup: ChildSetup =
        serde_json::from_slice(&std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?)?;
    if setup.cookies.is_empty() {
        bail!("the setup file has no users");
    }
    sys::set_source_offset(a.child_offset);
    let t = Target::open(c).await?;
    let steps = plan_steps(&a.steps, a.connections);
    let mut h = Holder {
        eps: t.nodes().iter().map(|n| n.ep.clone()).collect(),
        cookies: setup.cookies,
        offset: a.child_offset,
        sinks: Vec::new(),
        readers: Vec::new(),
        sh: Shared::new(),
    };
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    for &n in &steps {
        h.grow_to(n, c.connect_concurrency, true).await;
        let line =
            json!({ "child_step": n, "open": Counters::get(&h.sh.counters.open), "errors": h.sh.errors.count() });
        println!("{line}");
        if stdin.next_line().await?.is_none() {
            bail!("the parent went away");
        }
    }
    let pongs = h.ping_all(Duration::from_secs(30)).await;
    let open = Counters::get(&h.sh.counters.open);
    let (errors, samples) = (h.sh.errors.count(), h.sh.errors.samples());
    h.close();
    Ok(Outcome {
        workload: "capacity-child",
        params: json!({ "connections": a.connections, "offset": a.child_offset }),
        results: json!({ "pongs": pongs, "open": open, "errors": errors, "error_samples": samples }),
        ok: errors == 0 && pongs as usize == a.connections,
        human: vec![],
    })
}
