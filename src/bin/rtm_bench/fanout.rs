//! `fanout`: R rooms of M member connections, S of them per room sending at a total
//! rate. Every member records the end-to-end latency of every message (send time is in
//! the text) into the shared histograms; a message is lost when some member did not
//! get it by the end of the drain period. With `--find-saturation` the rate steps up
//! (same connections) until p99 passes the limit or anything is lost.
//!
//! Users: one owner creates the rooms and never connects; each room gets its own
//! `users / R` members (a user is in one room only) and its M connections are spread
//! over them, so every connection hears exactly one room.
//!
//! Several nodes (`--url` repeated, `--spawn-cluster N`): the senders connect to node
//! 0 and every other member to the other nodes in turn; only those receivers record
//! latency, so every measured delivery crossed nodes (losses count everyone). With
//! `--mixed` the receivers go to all nodes in turn, node 0 included, and the
//! deliveries that stayed on node 0 are timed apart (`latency_same_node`): the Redis
//! hop is the difference, measured in one run under the same load.

use std::{sync::Arc, time::Duration};

use anyhow::{Result, bail};
use clap::Args;
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::json;
use tokio::time::Instant;

use crate::{
    Common,
    load::{self, CpuMeter, Pace, Record, Shared, Sink},
    redisinfo::RedisUse,
    report::{self, Latency, Outcome},
    setup,
    stats::Counters,
    sys,
    target::Target,
};

#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    /// Rooms.
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,
    /// Member connections per room (senders included).
    #[arg(long, default_value_t = 100)]
    pub members: usize,
    /// Sending connections per room.
    #[arg(long, default_value_t = 1)]
    pub senders: usize,
    /// Messages per second over all rooms (the first step with --find-saturation).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Seconds to wait after the last send for acks and deliveries.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// Retention of the bench rooms (keep the last N messages).
    #[arg(long, default_value_t = 1000)]
    pub keep: i64,
    /// Seconds to wait after connecting before the first step (presence announcements
    /// of the new connections pass meanwhile).
    #[arg(long, default_value_t = 3.0)]
    pub settle: f64,
    /// Step the rate up until p99 passes --p99-limit-ms or messages are lost.
    #[arg(long)]
    pub find_saturation: bool,
    /// Explicit rates to step through (implies stepping), e.g. 50,100,200.
    #[arg(long, value_delimiter = ',')]
    pub rates: Vec<f64>,
    /// Each step's rate is the previous one times this.
    #[arg(long, default_value_t = 1.5)]
    pub step_factor: f64,
    /// Most steps of a saturation search.
    #[arg(long, default_value_t = 10)]
    pub max_steps: usize,
    /// A step with a higher p99 (ms) is past saturation.
    #[arg(long, default_value_t = 100.0)]
    pub p99_limit_ms: f64,
    /// Open the connections at this many per second (open loop; 0: as fast as
    /// --connect-concurrency allows). The connect latency (due → `hello`) and the
    /// `presence_change` objects the members received while connecting are reported.
    #[arg(long, default_value_t = 0.0)]
    pub connect_rate: f64,
    /// With several nodes: receivers on every node in turn (node 0 too); the latency
    /// of the deliveries that stayed on node 0 is reported apart.
    #[arg(long)]
    pub mixed: bool,
}

/// The result of one load step.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub rate: f64,
    pub sent: u64,
    pub acked: u64,
    pub expected: u64,
    pub received: u64,
    pub duplicates: u64,
    pub lost: u64,
    pub errors: u64,
    pub deliveries_per_s: f64,
    pub messages_per_s: f64,
    pub drain_s: f64,
    /// CPU % of one core: server / bench / everything else on the machine.
    pub cpu: load::Cpu,
    /// Server CPU µs per delivery (server CPU seconds / deliveries), and the bench's.
    pub server_us_per_delivery: Option<f64>,
    pub bench_us_per_delivery: Option<f64>,
    /// What Redis did meanwhile, when the target has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisUse>,
    pub latency: Latency,
    /// `--mixed`: deliveries that stayed on the senders' node (`latency` has the rest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_same_node: Option<Latency>,
}

impl Step {
    /// No loss, no error, every send acked.
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.errors == 0 && self.duplicates == 0 && self.acked == self.sent
    }
}

pub async fn run(a: FanoutArgs) -> Result<Outcome> {
    let c = &a.common;
    if a.rooms == 0 || a.members == 0 || a.senders == 0 || a.senders > a.members {
        bail!("need rooms ≥ 1, members ≥ 1 and 1 ≤ senders ≤ members");
    }
    if a.rate <= 0.0 {
        bail!("--rate must be positive");
    }
    let duration = Duration::from_secs_f64(c.duration.unwrap_or(10.0));
    let mut t = Target::open(c).await?;
    let rss_idle = t.rss_kib();
    let tag = sys::random_tag();
    let users_wanted = c.users.unwrap_or((a.rooms * a.members).min(500));
    let per_room = (users_wanted / a.rooms).clamp(1, a.members);
    let users = setup::register_many(&t, &tag, 1 + per_room * a.rooms, c.quiet).await?;
    let owner = &users[0];
    let mut rooms = Vec::with_capacity(a.rooms);
    for r in 0..a.rooms {
        rooms.push(setup::create_room(&t, owner, &format!("bench {tag} {r}"), a.keep).await?);
    }
    let joins: Vec<(usize, i64)> = (0..a.rooms)
        .flat_map(|r| (0..per_room).map(move |j| (1 + r * per_room + j, r)))
        .map(|(u, r)| (u, rooms[r]))
        .collect();
    setup::join_many(&t, &users, &joins, c.quiet).await?;

    // Connection i is member i % M of room i / M, as user (i % M) % per_room of it.
    let total = a.rooms * a.members;
    let cookies: Vec<String> =
        (0..total).map(|i| users[1 + (i / a.members) * per_room + (i % a.members) % per_room].cookie.clone()).collect();
    let sh = Shared::new();
    let pb = report::bar(total as u64, "connecting", c.quiet);
    let mut senders: Vec<(usize, i64, Sink)> = Vec::new();
    let mut readers = Vec::with_capacity(total);
    // Several nodes: senders on node 0, receiver k (in connection order) on node
    // 1 + k mod (nodes - 1).
    let is_sender = |i: usize| i % a.members < a.senders;
    let node_of: Vec<usize> = (0..total)
        .scan(0usize, |k, i| {
            Some(if is_sender(i) {
                0
            } else {
                *k += 1;
                if a.mixed { (*k - 1) % t.nodes().len() } else { t.receiver_node(*k - 1) }
            })
        })
        .collect();
    let several = t.several();
    let connect_t0 = Instant::now();
    let connect_cpu = CpuMeter::start(&t);
    let connect_hist = load::connect_paced(
        |i| t.node_ep(node_of[i]),
        &cookies,
        c.connect_concurrency,
        Some(a.connect_rate),
        &pb,
        &sh.errors,
        |i, ws, _| {
            let (sink, source) = ws.split();
            let record = match (several, is_sender(i), node_of[i]) {
                (false, _, _) => Record::All,
                (true, true, _) => Record::Nothing,
                (true, false, 0) => Record::Local,
                (true, false, _) => Record::All,
            };
            readers.push(tokio::spawn(load::receive(source, i, record, sh.clone())));
            if is_sender(i) {
                senders.push((i, rooms[i / a.members], sink));
            }
        },
    )
    .await;
    pb.finish_and_clear();
    let connect_s = connect_t0.elapsed().as_secs_f64();
    let connect_errors = sh.errors.count();
    // Let the presence announcements of the new connections pass before measuring.
    tokio::time::sleep(Duration::from_secs_f64(a.settle)).await;
    let connect_cpu = connect_cpu.read();
    let connect = json!({
        "rate": a.connect_rate, "seconds": report::r3(connect_s),
        "latency": Latency::of(&connect_hist),
        "presence_changes": Counters::get(&sh.counters.presence_changes),
        "presence_frames": Counters::get(&sh.counters.presence_frames),
        "cpu": connect_cpu,
    });
    sh.counters.reset_step();
    sh.latency.take();
    sh.latency_local.take();
    let rss_loaded = t.rss_kib();

    let rates: Vec<f64> = if !a.rates.is_empty() {
        a.rates.clone()
    } else if a.find_saturation {
        (0..a.max_steps).map(|k| (a.rate * a.step_factor.powi(k as i32) * 100.0).round() / 100.0).collect()
    } else {
        vec![a.rate]
    };
    let stepping = a.find_saturation || !a.rates.is_empty();
    let id_prefix = tag.clone();
    let mut steps: Vec<Step> = Vec::new();
    if connect_errors == 0 {
        for (k, &rate) in rates.iter().enumerate() {
            let pb = report::spinner("", c.quiet);
            let ticker = load::ticker(pb.clone(), format!("rate {rate}/s"), sh.clone());
            let step = run_step(&t, &sh, &mut senders, &a, rate, duration, format!("{id_prefix}{k}").into()).await?;
            ticker.abort();
            pb.finish_and_clear();
            let past = step.latency.p99_ms > a.p99_limit_ms || !step.clean();
            steps.push(step);
            if past || Counters::get(&sh.counters.open) < total as u64 {
                break;
            }
        }
    }
    sh.errors.set_stopping(true);
    drop(senders);
    for r in &readers {
        r.abort();
    }
    let log_lines = t.log_lines();
    let log_tail = t.log_tail(10);
    let nodes = t.nodes().len();
    t.stop();

    let first_bad = steps.iter().position(|s| s.latency.p99_ms > a.p99_limit_ms || !s.clean());
    let saturation = stepping.then(|| {
        let good = first_bad.map_or(steps.len(), |i| i);
        json!({
            "last_good": good.checked_sub(1).and_then(|i| steps.get(i)).map(|s| json!({"rate": s.rate, "deliveries_per_s": s.deliveries_per_s, "p99_ms": s.latency.p99_ms})),
            "first_bad": first_bad.and_then(|i| steps.get(i)).map(|s| json!({"rate": s.rate, "deliveries_per_s": s.deliveries_per_s, "p99_ms": s.latency.p99_ms, "lost": s.lost, "errors": s.errors})),
        })
    });
    let ok = connect_errors == 0
        && !steps.is_empty()
        && if stepping { steps.first().is_some_and(|s| s.clean()) } else { steps.iter().all(Step::clean) };

    let mut human = vec![
        format!(
            "{} rooms × {} members ({} connections, {} users + owner), {} sender(s) per room, {:.0} s per step",
            a.rooms,
            a.members,
            total,
            per_room * a.rooms,
            a.senders,
            duration.as_secs_f64()
        ),
        format!("server RSS idle {} KiB, with connections {} KiB", opt(rss_idle), opt(rss_loaded)),
        format!(
            "connect: {total} in {connect_s:.1} s{}, due → hello {}; {} presence_change objects in {} WebSocket messages received by the end of the settle time; cpu s/b/o % {}",
            if a.connect_rate > 0.0 { format!(" at {}/s", a.connect_rate) } else { String::new() },
            Latency::of(&connect_hist).line(),
            Counters::get(&sh.counters.presence_changes),
            Counters::get(&sh.counters.presence_frames),
            connect_cpu.short(),
        ),
        format!(
            "{:>9} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>6} {:>15} {:>11}",
            "rate/s",
            "deliveries/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "lost",
            "errors",
            "cpu s/b/o %",
            "µs/dlv s/b"
        ),
    ];
    if several {
        human.insert(
            1,
            format!(
                "{} nodes: senders on {}, receivers on {} in turn (the table: deliveries across nodes only)",
                t.nodes().len(),
                t.node_ep(0).addr,
                if a.mixed { "every node" } else { "the others" }
            ),
        );
    }
    let mut split_lines = Vec::new();
    for s in &steps {
        if let Some(split) = s.cpu.split() {
            let redis = s.redis.as_ref().map(|r| format!("; redis {}", r.short())).unwrap_or_default();
            split_lines.push(format!("{:>9}: cpu {split}{redis}", s.rate));
        }
        if let Some(l) = &s.latency_same_node {
            split_lines.push(format!("{:>9}: same node as the senders: {}", s.rate, l.line()));
        }
        human.push(format!(
            "{:>9} {:>12.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>7} {:>6} {:>15} {:>11}",
            s.rate,
            s.deliveries_per_s,
            s.latency.p50_ms,
            s.latency.p90_ms,
            s.latency.p99_ms,
            s.latency.p999_ms,
            s.latency.max_ms,
            s.lost,
            s.errors,
            s.cpu.short(),
            format!("{}/{}", opt(s.server_us_per_delivery), opt(s.bench_us_per_delivery))
        ));
    }
    human.extend(split_lines);
    if let Some(sat) = &saturation {
        human.push(format!("saturation: {sat}"));
    }
    if connect_errors > 0 {
        human.push(format!("{connect_errors} connection(s) failed: no load was run"));
    }
    for e in sh.errors.samples() {
        human.push(format!("error: {e}"));
    }
    if !ok && let Some(tail) = log_tail.filter(|s| !s.is_empty()) {
        human.push(format!("server log (last lines):\n{tail}"));
    }
    Ok(Outcome {
        workload: "fanout",
        params: json!({
            "rooms": a.rooms, "members": a.members, "senders_per_room": a.senders,
            "connections": total, "users": per_room * a.rooms + 1, "duration_s": duration.as_secs_f64(),
            "rates": rates, "find_saturation": stepping, "p99_limit_ms": a.p99_limit_ms,
            "keep": a.keep, "text_bytes": c.text_bytes, "settle_s": a.settle, "spawn": c.spawn, "database": c.database.as_deref().map(rtm::config::redact_url),
            "outbox_frames": c.outbox_frames, "nodes": nodes, "spawn_cluster": c.spawn_cluster, "mixed": a.mixed,
        }),
        results: json!({
            "connect_errors": connect_errors, "connect": connect,
            "rss_idle_kib": rss_idle, "rss_loaded_kib": rss_loaded,
            "steps": steps, "saturation": saturation, "server_log_lines": log_lines,
            "error_samples": sh.errors.samples(),
        }),
        ok,
        human,
    })
}

/// Runs one rate for `duration`, drains, and measures.
async fn run_step(
    t: &Target,
    sh: &Arc<Shared>,
    senders: &mut Vec<(usize, i64, Sink)>,
    a: &FanoutArgs,
    rate: f64,
    duration: Duration,
    id_prefix: Arc<str>,
) -> Result<Step> {
    sh.counters.reset_step();
    sh.latency.take();
    sh.latency_local.take();
    let errors0 = sh.errors.count();
    let n = senders.len().max(1);
    let period = Duration::from_secs_f64(n as f64 / rate);
    let redis = load::redis_meter(t).await;
    let cpu = CpuMeter::start(t);
    let start = Instant::now() + Duration::from_millis(50);
    let start_us = sys::unix_micros() + 50_000;
    let until = start + duration;
    let mut handles = Vec::with_capacity(n);
    for (k, (conn, room, sink)) in senders.drain(..).enumerate() {
        let pace = Pace {
            conn,
            room,
            period,
            offset: period.mul_f64(k as f64 / n as f64),
            start,
            start_us,
            until,
            id_prefix: id_prefix.clone(),
            pad: 0,
            text_bytes: a.common.text_bytes,
            read: false,
        };
        handles.push((conn, room, load::spawn_sender(sink, pace, sh.clone())));
    }
    for (conn, room, h) in handles {
        match h.await {
            Ok(sink) => senders.push((conn, room, sink)),
            Err(e) => sh.errors.add(format!("sender {conn} task failed: {e}")),
        }
    }
    let members = a.members as u64;
    let drain_s = load::drain(sh, |acked| acked * members, Duration::from_secs_f64(a.drain)).await.as_secs_f64();
    let cpu = cpu.read();
    let redis = load::redis_read(&redis).await;
    let c = &sh.counters;
    let (sent, acked, received, duplicates) =
        (Counters::get(&c.sent), Counters::get(&c.acked), Counters::get(&c.received), Counters::get(&c.duplicates));
    let expected = acked * members;
    let last = sh.last_delivery_us.load(std::sync::atomic::Ordering::Relaxed);
    let window = (last.saturating_sub(start_us) as f64 / 1e6).max(duration.as_secs_f64());
    let h = sh.latency.take();
    let local = sh.latency_local.take();
    let (server_us, bench_us) = cpu.us_per(received);
    Ok(Step {
        server_us_per_delivery: server_us,
        bench_us_per_delivery: bench_us,
        rate,
        sent,
        acked,
        expected,
        received,
        duplicates,
        lost: expected.saturating_sub(received),
        errors: sh.errors.count() - errors0,
        deliveries_per_s: (received as f64 / window).round(),
        messages_per_s: report::r3(acked as f64 / duration.as_secs_f64()),
        drain_s: report::r3(drain_s),
        cpu,
        redis,
        latency: Latency::of(&h),
        latency_same_node: (!local.is_empty()).then(|| Latency::of(&local)),
    })
}

/// A number or `-` when unknown.
pub fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}
