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
    /// Unix µs of the newest delivery (to compute deliveries/s over the real window).
    pub last_delivery_us: AtomicU64,
}

impl Shared {
    pub fn new() -> Arc<Self> {
        Arc::new(Shared {
            counters: Counters::default(),
            errors: ErrorLog::default(),
            latency: Latencies::new(),
            last_delivery_us: AtomicU64::new(0),
        })
    }
}

/// Opens connection `i` for each `i` in `0..cookies.len()` (at most `concurrency`
/// handshakes at once) and hands each to `on_open`; failures go to the error log.
pub async fn connect_many(
    t: &Endpoint,
    cookies: &[String],
    concurrency: usize,
    pb: &ProgressBar,
    errors: &ErrorLog,
    mut on_open: impl FnMut(usize, Ws, Hello),
) {
    stream::iter(0..cookies.len())
        .map(|i| async move { (i, wsconn::connect(t, &cookies[i]).await) })
        .buffer_unordered(concurrency.max(1))
        .for_each(|(i, r)| {
            match r {
                Ok((ws, hello)) => on_open(i, ws, hello),
                Err(e) => errors.add(format!("connection {i}: {e:#}")),
            }
            pb.inc(1);
            std::future::ready(())
        })
        .await;
}

/// Reads a member connection until it closes. Bench messages are counted, checked
/// for duplicates (seq not above the last one: each bench connection hears one room)
/// and, unless they are the connection's own (when `record_own` is false), their
/// latency is recorded. Acks, errors, pongs and `closing` are counted too.
pub async fn receive(mut source: Source, conn: usize, record_own: bool, sh: Arc<Shared>) {
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
            _ => continue,
        };
        let now = sys::unix_micros();
        let (mut received, mut dups, mut acked) = (0u64, 0u64, 0u64);
        let parsed = for_each_lite(text, |f| match f.ty.as_ref() {
            "message" => {
                let Some((sent, sender, _)) = f.text.as_deref().and_then(parse_bench_text) else {
                    return;
                };
                let seq = f.seq.unwrap_or(0);
                if seq != 0 && seq <= last_seq {
                    dups += 1;
                    return;
                }
                last_seq = seq;
                received += 1;
                if record_own || sender != conn {
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
        if acked > 0 {
            Counters::add(&sh.counters.acked, acked);
        }
        sh.latency.record(conn, &lat);
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
            let msg = wsconn::send_frame(
                n,
                p.room,
                format!("{}-{}-{n}", p.id_prefix, p.conn),
                wsconn::bench_text(scheduled, p.conn, n),
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
/// by the server, by this bench process, and by everything else on the machine (other
/// people's builds share these cores, and their share is reported next to each result).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Cpu {
    pub server: Option<f64>,
    pub bench: Option<f64>,
    pub others: Option<f64>,
}

impl Cpu {
    /// `server/bench/others` for the human summary.
    pub fn short(&self) -> String {
        let f = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.0}"));
        format!("{}/{}/{}", f(self.server), f(self.bench), f(self.others))
    }
}

/// Measures [`Cpu`] between `start` and `read`.
pub struct CpuMeter {
    server_pid: Option<u32>,
    server0: Option<f64>,
    bench0: Option<f64>,
    machine0: Option<(u64, u64)>,
    t0: Instant,
}

impl CpuMeter {
    pub fn start(t: &Target) -> Self {
        CpuMeter {
            server_pid: t.pid,
            server0: t.cpu_secs(),
            bench0: sys::cpu_secs(std::process::id()),
            machine0: sys::machine_ticks(),
            t0: Instant::now(),
        }
    }

    pub fn read(&self) -> Cpu {
        let secs = self.t0.elapsed().as_secs_f64().max(1e-3);
        let pct = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| ((b - a) / secs * 100.0).round());
        let server = pct(self.server0, self.server_pid.and_then(sys::cpu_secs));
        let bench = pct(self.bench0, sys::cpu_secs(std::process::id()));
        let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
        let machine = self.machine0.zip(sys::machine_ticks()).and_then(|((b0, t0), (b1, t1))| {
            (t1 > t0).then(|| (b1.saturating_sub(b0)) as f64 / (t1 - t0) as f64 * cores * 100.0)
        });
        let others = machine.map(|m| (m - server.unwrap_or(0.0) - bench.unwrap_or(0.0)).max(0.0).round());
        Cpu { server, bench, others }
    }
}
