//! `dm`: P pairs of users chatting in direct messages at a total rate, while idle
//! connections (of other users, in no room) bring the server up to `--connections`.
//! Latency is recorded at the peer (a sender's echo of its own message is counted for
//! losses but not timed); every DM message must reach both sides. With `--read` each
//! sender marks its DM read before each message; without it nobody reads.
//!
//! Several nodes (`--url` repeated, `--spawn-cluster N`): one side of every pair is on
//! node 0, the other on the other nodes in turn, and the idle connections are spread
//! over all nodes; every timed delivery (at the peer) crosses nodes.

use std::{sync::Arc, time::Duration};

use anyhow::{Result, bail};
use clap::Args;
use futures_util::StreamExt;
use serde_json::json;
use tokio::time::Instant;

use crate::{
    Common,
    fanout::opt,
    load::{self, CpuMeter, Pace, Record, Shared, Sink},
    report::{self, Latency, Outcome},
    setup,
    stats::Counters,
    sys,
    target::Target,
};

#[derive(Args, Debug, Clone)]
pub struct DmArgs {
    #[command(flatten)]
    pub common: Common,
    /// Chatting pairs (each side one connection, sending half the pair's messages).
    #[arg(long, default_value_t = 100)]
    pub pairs: usize,
    /// Total connections, idle ones included.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// DM messages per second over all pairs.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Users that own the idle connections.
    #[arg(long, default_value_t = 100)]
    pub idle_users: usize,
    /// Seconds to wait after the last send for acks and deliveries.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// Each sender marks its DM read (to its end) before each message, as people do
    /// who answer what they read. Without it nobody reads: past the retention, each
    /// DM holds what it was sent (§5.6), which is a different load on the database.
    #[arg(long)]
    pub read: bool,
}

pub async fn run(a: DmArgs) -> Result<Outcome> {
    let c = &a.common;
    if a.pairs == 0 || a.rate <= 0.0 {
        bail!("need --pairs ≥ 1 and a positive --rate");
    }
    let duration = Duration::from_secs_f64(c.duration.unwrap_or(10.0));
    let active = 2 * a.pairs;
    let idle = a.connections.saturating_sub(active);
    let idle_users = if idle == 0 { 0 } else { a.idle_users.clamp(1, idle) };
    let mut t = Target::open(c).await?;
    let rss_idle = t.rss_kib();
    let tag = sys::random_tag();
    let users = setup::register_many(&t, &tag, active + idle_users, c.quiet).await?;
    let pairs: Vec<(usize, usize)> = (0..a.pairs).map(|p| (2 * p, 2 * p + 1)).collect();
    let dms = setup::open_dms(&t, &users, &pairs).await?;

    // Connections 0..active are the pair members (user i), then the idle ones.
    let cookies: Vec<String> = (0..active + idle)
        .map(|i| {
            let u = if i < active { i } else { active + (i - active) % idle_users };
            users[u].cookie.clone()
        })
        .collect();
    let sh = Shared::new();
    let pb = report::bar(cookies.len() as u64, "connecting", c.quiet);
    let mut senders: Vec<(usize, i64, Sink)> = Vec::new();
    let mut readers = Vec::with_capacity(cookies.len());
    // Pair p: side 2p on node 0, side 2p+1 on the other nodes in turn; idle ones
    // everywhere in turn.
    let node_of = |i: usize| {
        if i >= active {
            i - active
        } else if i.is_multiple_of(2) {
            0
        } else {
            t.receiver_node(i / 2)
        }
    };
    load::connect_many(
        |i| t.node_ep(node_of(i)),
        &cookies,
        c.connect_concurrency,
        &pb,
        &sh.errors,
        |i, ws, _| {
            let (sink, source) = ws.split();
            readers.push(tokio::spawn(load::receive(source, i, Record::Others, sh.clone())));
            if i < active {
                senders.push((i, dms[i / 2], sink));
            }
        },
    )
    .await;
    pb.finish_and_clear();
    let connect_errors = sh.errors.count();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    sh.counters.reset_step();
    sh.latency.take();
    let rss_loaded = t.rss_kib();

    let mut result = None;
    if connect_errors == 0 {
        let pb = report::spinner("", c.quiet);
        let ticker = load::ticker(pb.clone(), format!("{} DM/s", a.rate), sh.clone());
        let redis = load::redis_meter(&t).await;
        let cpu = CpuMeter::start(&t);
        let n = senders.len().max(1);
        let period = Duration::from_secs_f64(n as f64 / a.rate);
        let start = Instant::now() + Duration::from_millis(50);
        let start_us = sys::unix_micros() + 50_000;
        let id_prefix: Arc<str> = tag.clone().into();
        let mut handles = Vec::new();
        for (k, (conn, room, sink)) in senders.drain(..).enumerate() {
            let pace = Pace {
                conn,
                room,
                period,
                offset: period.mul_f64(k as f64 / n as f64),
                start,
                start_us,
                until: start + duration,
                id_prefix: id_prefix.clone(),
                pad: 0,
                text_bytes: c.text_bytes,
                read: a.read,
            };
            handles.push(load::spawn_sender(sink, pace, sh.clone()));
        }
        for h in handles {
            match h.await {
                Ok(sink) => senders.push((0, 0, sink)),
                Err(e) => sh.errors.add(format!("sender task failed: {e}")),
            }
        }
        let drain_s = load::drain(&sh, |acked| acked * 2, Duration::from_secs_f64(a.drain)).await.as_secs_f64();
        let cpu_pct = cpu.read();
        let redis = load::redis_read(&redis).await;
        ticker.abort();
        pb.finish_and_clear();
        result = Some((drain_s, cpu_pct, redis, sh.latency.take()));
    }
    let open_at_end = Counters::get(&sh.counters.open);
    sh.errors.set_stopping(true);
    drop(senders);
    for r in &readers {
        r.abort();
    }
    let log_tail = t.log_tail(10);
    let nodes = t.nodes().len();
    t.stop();

    let cn = &sh.counters;
    let (sent, acked, received, duplicates) =
        (Counters::get(&cn.sent), Counters::get(&cn.acked), Counters::get(&cn.received), Counters::get(&cn.duplicates));
    let expected = acked * 2;
    let lost = expected.saturating_sub(received);
    let errors = sh.errors.count();
    let (drain_s, cpu_use, redis, hist) = match result {
        Some((d, cpu, r, h)) => (d, cpu, r, Some(h)),
        None => (0.0, crate::load::Cpu::default(), None, None),
    };
    let latency = hist.as_ref().map(Latency::of).unwrap_or_default();
    let us_per = cpu_use.us_per(received);
    let ok = errors == 0 && lost == 0 && duplicates == 0 && sent == acked && hist.is_some();
    let mut human = vec![
        format!(
            "{} pairs + {} idle connections ({} total, {} users), {} DM/s for {:.0} s{}",
            a.pairs,
            idle,
            active + idle,
            users.len(),
            a.rate,
            duration.as_secs_f64(),
            if a.read { ", each marked read before each message" } else { ", nobody reading" }
        ),
        format!(
            "server RSS idle {} KiB, with connections {} KiB; open at the end {open_at_end}",
            opt(rss_idle),
            opt(rss_loaded)
        ),
        format!(
            "sent {sent}, acked {acked}, delivered {received}/{expected}, lost {lost}, duplicates {duplicates}, errors {errors}"
        ),
        format!("peer latency: {}", latency.line()),
        format!(
            "cpu % of one core, server/bench/others: {}; cpu µs per delivery, server/bench: {}/{}",
            cpu_use.short(),
            opt(us_per.0),
            opt(us_per.1)
        ),
    ];
    if nodes > 1 {
        human.insert(1, format!("{nodes} nodes: one side of each pair on node 0, the other on the others in turn"));
    }
    if let Some(split) = cpu_use.split() {
        human.push(format!("cpu split: {split}"));
    }
    if let Some(r) = &redis {
        human.push(format!("redis: {}", r.short()));
    }
    for e in sh.errors.samples() {
        human.push(format!("error: {e}"));
    }
    if !ok && let Some(tail) = log_tail.filter(|s| !s.is_empty()) {
        human.push(format!("server log (last lines):\n{tail}"));
    }
    Ok(Outcome {
        workload: "dm",
        params: json!({
            "pairs": a.pairs, "text_bytes": c.text_bytes, "connections": active + idle, "idle_users": idle_users,
            "rate": a.rate, "duration_s": duration.as_secs_f64(), "spawn": c.spawn,
            "database": c.database.as_deref().map(rtm::config::redact_url),
            "nodes": nodes, "spawn_cluster": c.spawn_cluster, "read": a.read,
        }),
        results: json!({
            "rss_idle_kib": rss_idle, "rss_loaded_kib": rss_loaded,
            "sent": sent, "acked": acked, "expected": expected, "received": received,
            "lost": lost, "duplicates": duplicates, "errors": errors, "connect_errors": connect_errors,
            "messages_per_s": report::r3(acked as f64 / duration.as_secs_f64()),
            "drain_s": report::r3(drain_s), "cpu": cpu_use, "redis": redis,
            "server_us_per_delivery": us_per.0, "bench_us_per_delivery": us_per.1,
            "latency": latency, "error_samples": sh.errors.samples(),
        }),
        ok,
        human,
    })
}
