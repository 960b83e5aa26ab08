//! The moving parts the message workloads share: opening many connections with a
//! bounded number of handshakes in flight, the receive loop of a member connection
//! (count deliveries, catch duplicates, record end-to-end latency, count acks and
//! errors), the paced send loop of a sender (open loop: each message carries the time
//! it was scheduled for, so a late sender shows up as latency, not as a lower rate),
//! waiting for the last deliveries, and the live progress line.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::{
    SinkExt, StreamExt,
    stream::{self, SplitSink, SplitStream},
};
use indicatif::ProgressBar;
use tokio::{
    task::JoinHandle,
    time::{Instant, MissedTickBehavior},
};
use tokio_tungstenite::tungstenite::Message;

use crate::{
    cluster,
    redisinfo::{RedisMeter, RedisUse},
    report,
    stats::{Counters, ErrorLog, Latencies},
    sys,
    target::{Endpoint, Target},
    wsconn::{self, Hello, Ws, for_each_lite, parse_bench_text},
};

pub type Sink = SplitSink<Ws, Message>;
pub type Source = SplitStream<Ws>;

/// Everything the client tasks of one run report into.
pub struct Shared {
    pub counters: Counters,
    pub errors: ErrorLog,
    pub latency: Latencies,
    /// Latency of deliveries that did not cross nodes, kept apart (`fanout --mixed`).
    pub latency_local: Latencies,
    /// Unix µs of the newest delivery (to compute deliveries/s over the real window).
    pub last_delivery_us: AtomicU64,
}

impl Shared {
    pub fn new() -> Arc<Self> {
        Arc::new(Shared {
            counters: Counters::default(),
            errors: ErrorLog::default(),
            latency: Latencies::new(),
            latency_local: Latencies::new(),
            last_delivery_us: AtomicU64::new(0),
        })
    }
}

/// Opens connection `i` for each `i` in `0..cookies.len()` to the endpoint `ep(i)` (at
/// most `concurrency` handshakes at once) and hands each to `on_open`; failures go to
/// the error log.
pub async fn connect_many<'a>(
    ep: impl Fn(usize) -> &'a Endpoint,
    cookies: &[String],
    concurrency: usize,
    pb: &ProgressBar,
    errors: &ErrorLog,
    on_open: impl FnMut(usize, Ws, Hello),
) {
    connect_paced(ep, cookies, concurrency, None, pb, errors, on_open).await;
}

/// [`connect_many`], and with `rate` (connections per second) connection `i` starts
/// at `i / rate` seconds, open loop: the connect latency of each (from when it was
/// due until its `hello` arrived, µs) goes into the returned histogram, so a server
/// that falls behind a ramp shows it as latency.
pub async fn connect_paced<'a>(
    ep: impl Fn(usize) -> &'a Endpoint,
    cookies: &[String],
    concurrency: usize,
    rate: Option<f64>,
    pb: &ProgressBar,
    errors: &ErrorLog,
    mut on_open: impl FnMut(usize, Ws, Hello),
) -> hdrhistogram::Histogram<u64> {
    let ep = &ep;
    let t0 = Instant::now();
    let mut latency = crate::stats::histogram();
    stream::iter(0..cookies.len())
        .map(|i| async move {
            let due = match rate.filter(|r| *r > 0.0) {
                Some(r) => {
                    let at = t0 + Duration::from_secs_f64(i as f64 / r);
                    tokio::time::sleep_until(at).await;
                    at
                }
                None => Instant::now(),
            };
            let r = wsconn::connect(ep(i), &cookies[i]).await;
            (i, r, due.elapsed())
        })
        .buffer_unordered(concurrency.max(1))
        .for_each(|(i, r, took)| {
            match r {
                Ok((ws, hello)) => {
                    latency.saturating_record((took.as_micros() as u64).max(1));
                    on_open(i, ws, hello)
                }
                Err(e) => errors.add(format!("connection {i}: {e:#}")),
            }
            pb.inc(1);
            std::future::ready(())
        })
        .await;
    latency
}

/// Which deliveries of a connection have their latency recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// Every bench message, the connection's own included.
    All,
    /// Every bench message but the connection's own.
    Others,
    /// None (a sender on node 0 of several: its deliveries do not cross nodes).
    Nothing,
    /// Every bench message but the connection's own, into `latency_local` (a receiver
    /// on the senders' node, next to receivers on other nodes).
    Local,
}

/// Reads a member connection until it closes. Bench messages are counted, checked
/// for duplicates (seq not above the last one: each bench connection hears one room)
/// and, as `record` says, their latency is recorded. Acks, errors, pongs and
/// `closing` are counted too.
pub async fn receive(mut source: Source, conn: usize, record: Record, sh: Arc<Shared>) {
    Counters::add(&sh.counters.open, 1);
    let mut last_seq = 0i64;
    let mut lat: Vec<u64> = Vec::with_capacity(64);
    loop {
        let msg = match source.next().await {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                if !sh.errors.stopping() {
                    sh.errors.add(format!("connection {conn}: read failed: {e}"));
                }
                break;
            }
            None => {
                if !sh.errors.stopping() {
                    sh.errors.add(format!("connection {conn}: closed by the server"));
                }
                break;
            }
        };
        let text = match &msg {
            Message::Text(t) => t.as_str(),
            Message::Close(f) => {
                if !sh.errors.stopping() {
                    sh.errors.add(format!("connection {conn}: close frame {f:?}"));
                }
                break;
            }
            // tungstenite answers pings itself.
            Message::Ping(_) | Message::Pong(_) => continue,
            // The server only sends text: anything else is a bug to report, not skip.
            other => {
                sh.errors.add(format!("connection {conn}: unexpected WebSocket message {other:?}"));
                continue;
            }
        };
        let now = sys::unix_micros();
        let (mut received, mut dups, mut acked, mut presence) = (0u64, 0u64, 0u64, 0u64);
        let parsed = for_each_lite(text, |f| match f.ty.as_ref() {
            "message" => {
                // Bench rooms carry bench messages only.
                let Some((sent, sender, _)) = f.text.as_deref().and_then(parse_bench_text) else {
                    sh.errors.add(format!("connection {conn}: a message that is not the bench's"));
                    return;
                };
                let seq = f.seq.unwrap_or(0);
                if seq != 0 && seq <= last_seq {
                    dups += 1;
                    return;
                }
                last_seq = seq;
                received += 1;
                let own = sender == conn;
                if record == Record::All || (matches!(record, Record::Others | Record::Local) && !own) {
                    lat.push(now.saturating_sub(sent));
                }
            }
            "ack" => {
                acked += 1;
                if f.duplicate {
                    sh.errors.add(format!("connection {conn}: a send was acked as a duplicate"));
                }
            }
            "pong" => Counters::add(&sh.counters.pongs, 1),
            "presence_change" => presence += 1,
            "error" => sh.errors.add(format!("connection {conn}: error frame {}", f.code.as_deref().unwrap_or("?"))),
            "closing" if !sh.errors.stopping() => {
                sh.errors.add(format!("connection {conn}: server closing: {}", f.code.as_deref().unwrap_or("?")))
            }
            _ => {}
        });
        if let Err(e) = parsed {
            sh.errors.add(format!("connection {conn}: undecodable frame: {e}"));
        }
        if received > 0 {
            Counters::add(&sh.counters.received, received);
            sh.last_delivery_us.fetch_max(now, Ordering::Relaxed);
        }
        if dups > 0 {
            Counters::add(&sh.counters.duplicates, dups);
        }
        if presence > 0 {
            Counters::add(&sh.counters.presence_changes, presence);
            Counters::add(&sh.counters.presence_frames, 1);
        }
        if acked > 0 {
            Counters::add(&sh.counters.acked, acked);
        }
        if record == Record::Local {
            sh.latency_local.record(conn, &lat);
        } else {
            sh.latency.record(conn, &lat);
        }
        lat.clear();
    }
    sh.counters.open.fetch_sub(1, Ordering::Relaxed);
}

/// One sender's schedule for one load step.
#[derive(Clone)]
pub struct Pace {
    /// The sending connection (its index is in every message).
    pub conn: usize,
    pub room: i64,
    /// Time between two of this sender's messages.
    pub period: Duration,
    /// Where in the period this sender starts (spreads senders evenly).
    pub offset: Duration,
    /// Step start, as an instant and as Unix µs (send times are derived from both).
    pub start: Instant,
    pub start_us: u64,
    /// No message is scheduled at or after this instant.
    pub until: Instant,
    /// Makes client ids unique across runs and steps.
    pub id_prefix: Arc<str>,
    /// Filler bytes after the bench text (large messages).
    pub pad: usize,
    /// With no `pad`: fill the text with words to this many bytes (`--text-bytes`).
    pub text_bytes: usize,
    /// Before each message, mark the room read up to its end (`dm --read`).
    pub read: bool,
}

/// Sends bench messages on schedule until `until`; gives the sink back.
pub fn spawn_sender(mut sink: Sink, p: Pace, sh: Arc<Shared>) -> JoinHandle<Sink> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(p.start + p.offset, p.period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let mut n = 0u64;
        loop {
            let at = tick.tick().await;
            if at >= p.until {
                break;
            }
            let scheduled = p.start_us + at.duration_since(p.start).as_micros() as u64;
            n += 1;
            if p.read {
                // As a person answering what they have just read: the server clamps
                // the marker to the room's last seq. No id: only the `read` event
                // comes back.
                let f = rtm::ws::protocol::ClientFrame::Read { id: None, room: p.room, seq: i64::MAX };
                if let Err(e) = sink.send(wsconn::frame(&f)).await {
                    if !sh.errors.stopping() {
                        sh.errors.add(format!("sender {}: write failed: {e}", p.conn));
                    }
                    break;
                }
            }
            let msg = wsconn::send_frame(
                n,
                p.room,
                format!("{}-{}-{n}", p.id_prefix, p.conn),
                if p.pad > 0 {
                    wsconn::bench_text_padded(scheduled, p.conn, n, p.pad)
                } else {
                    wsconn::bench_text_sized(scheduled, p.conn, n, p.text_bytes)
                },
            );
            if let Err(e) = sink.send(msg).await {
                if !sh.errors.stopping() {
                    sh.errors.add(format!("sender {}: write failed: {e}", p.conn));
                }
                break;
            }
            Counters::add(&sh.counters.sent, 1);
        }
        sink
    })
}

/// Waits until every sent message is acked and `expected(acked)` deliveries arrived,
/// or `limit` passed; returns how long it waited.
pub async fn drain(sh: &Shared, expected: impl Fn(u64) -> u64, limit: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        let c = &sh.counters;
        let acked = Counters::get(&c.acked);
        let done = acked >= Counters::get(&c.sent) && Counters::get(&c.received) >= expected(acked);
        if done || t0.elapsed() >= limit || Counters::get(&c.open) == 0 {
            return t0.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Refreshes a spinner with the live counters every 250 ms until aborted.
pub fn ticker(pb: ProgressBar, label: String, sh: Arc<Shared>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            let c = &sh.counters;
            pb.set_message(format!(
                "{label}: open {} sent {} acked {} delivered {} errors {}",
                Counters::get(&c.open),
                Counters::get(&c.sent),
                Counters::get(&c.acked),
                Counters::get(&c.received),
                sh.errors.count()
            ));
        }
    })
}

/// CPU used during a measurement, in % of one core (200 = both cores of this machine):
/// by the server (all its nodes), by this bench process, and by everything else on the
/// machine (other people's builds share these cores, and their share is reported next
/// to each result). With several nodes each node's share is listed too, and a known
/// Redis or spawned PostgreSQL is reported apart (and not counted in `others`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Cpu {
    pub server: Option<f64>,
    pub bench: Option<f64>,
    pub others: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres: Option<f64>,
    /// Seconds measured (the step and its drain).
    pub secs: f64,
}

impl Cpu {
    /// `server/bench/others` for the human summary.
    pub fn short(&self) -> String {
        let f = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.0}"));
        format!("{}/{}/{}", f(self.server), f(self.bench), f(self.others))
    }

    /// CPU µs per item (a delivery) of the server and of this bench: CPU seconds over
    /// the window divided by `n`. The figure that does not depend on how busy the
    /// machine's other users keep the cores (BENCHMARKS.md, issue 16).
    pub fn us_per(&self, n: u64) -> (Option<f64>, Option<f64>) {
        let per = |pct: Option<f64>| pct.filter(|_| n > 0).map(|p| report::r3(p / 100.0 * self.secs / n as f64 * 1e6));
        (per(self.server), per(self.bench))
    }

    /// `nodes 40+38 %, redis 9 %, postgres 2 %` when there is more than a server.
    pub fn split(&self) -> Option<String> {
        let mut parts = Vec::new();
        if !self.nodes.is_empty() {
            let n: Vec<String> = self.nodes.iter().map(|v| format!("{v:.0}")).collect();
            parts.push(format!("nodes {} %", n.join("+")));
        }
        if let Some(r) = self.redis {
            parts.push(format!("redis {r:.0} %"));
        }
        if let Some(p) = self.postgres {
            parts.push(format!("postgres {p:.0} %"));
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// Measures [`Cpu`] between `start` and `read`.
pub struct CpuMeter {
    nodes: Vec<(u32, Option<f64>)>,
    redis: Option<(u32, Option<f64>)>,
    postgres: Option<(u32, Option<f64>)>,
    bench0: Option<f64>,
    machine0: Option<(u64, u64)>,
    t0: Instant,
}

impl CpuMeter {
    pub fn start(t: &Target) -> Self {
        CpuMeter {
            nodes: t.node_pids().into_iter().map(|p| (p, sys::cpu_secs(p))).collect(),
            redis: t.redis_pid.map(|p| (p, sys::cpu_secs(p))),
            postgres: t.postgres_pid.map(|p| (p, cluster::tree_cpu_secs(p))),
            bench0: sys::cpu_secs(std::process::id()),
            machine0: sys::machine_ticks(),
            t0: Instant::now(),
        }
    }

    pub fn read(&self) -> Cpu {
        let secs = self.t0.elapsed().as_secs_f64().max(1e-3);
        // One decimal: the per-delivery figures are computed from these.
        let pct = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| ((b - a) / secs * 1000.0).round() / 10.0);
        let nodes: Vec<Option<f64>> = self.nodes.iter().map(|&(p, c0)| pct(c0, sys::cpu_secs(p))).collect();
        let server = if nodes.is_empty() { None } else { nodes.iter().copied().sum::<Option<f64>>() };
        let redis = self.redis.and_then(|(p, c0)| pct(c0, sys::cpu_secs(p)));
        let postgres = self.postgres.and_then(|(p, c0)| pct(c0, cluster::tree_cpu_secs(p)));
        let bench = pct(self.bench0, sys::cpu_secs(std::process::id()));
        let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
        let machine = self.machine0.zip(sys::machine_ticks()).and_then(|((b0, t0), (b1, t1))| {
            (t1 > t0).then(|| (b1.saturating_sub(b0)) as f64 / (t1 - t0) as f64 * cores * 100.0)
        });
        let known = [server, bench, redis, postgres].iter().map(|v| v.unwrap_or(0.0)).sum::<f64>();
        let others = machine.map(|m| (m - known).max(0.0).round());
        let nodes = if nodes.len() > 1 { nodes.iter().map(|v| v.unwrap_or(0.0)).collect() } else { Vec::new() };
        Cpu { server, bench, others, nodes, redis, postgres, secs: report::r3(secs) }
    }
}

/// Starts reading Redis's INFO counters when the target has a Redis.
pub async fn redis_meter(t: &Target) -> Option<RedisMeter> {
    RedisMeter::start(t.redis_addr?).await
}

/// Redis's work since `redis_meter`.
pub async fn redis_read(m: &Option<RedisMeter>) -> Option<RedisUse> {
    m.as_ref()?.read().await
}
