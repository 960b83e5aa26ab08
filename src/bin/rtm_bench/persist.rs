//! `persist`: sustained stored messages per second. Sender connections (one user each,
//! spread over a few rooms) keep a window of sends in flight and send one more for each
//! ack, as fast as the server stores them. An ack means "kept, with this seq": the
//! result is acked messages/s, the send-to-ack latency, and a check that each room's
//! acked seqs are unique and contiguous (nothing stored twice or skipped).

use std::{collections::VecDeque, sync::Arc, time::Duration};

use anyhow::{Result, bail};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::{
    Common,
    load::{CpuMeter, Shared},
    report::{self, Latency, Outcome},
    setup,
    stats::Counters,
    sys,
    target::Target,
    wsconn::{self, Ws, for_each_lite},
};

#[derive(Args, Debug, Clone)]
pub struct PersistArgs {
    #[command(flatten)]
    pub common: Common,
    /// Rooms written to.
    #[arg(long, default_value_t = 4)]
    pub rooms: usize,
    /// Sender connections (one user each), spread over the rooms.
    #[arg(long, default_value_t = 8)]
    pub senders: usize,
    /// Sends in flight per connection.
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Retention of the rooms (keep the last N messages; older ones are deleted as
    /// new ones are stored, as in production).
    #[arg(long, default_value_t = 1000)]
    pub keep: i64,
    /// Seconds to wait for the last acks.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
}

/// What one sender saw.
struct SenderResult {
    room: usize,
    seqs: Vec<i64>,
    last_ack: Option<Instant>,
}

pub async fn run(a: PersistArgs) -> Result<Outcome> {
    let c = &a.common;
    if a.rooms == 0 || a.senders == 0 || a.window == 0 {
        bail!("need --rooms, --senders and --window ≥ 1");
    }
    let duration = Duration::from_secs_f64(c.duration.unwrap_or(10.0));
    let mut t = Target::open(c).await?;
    let tag = sys::random_tag();
    let users = setup::register_many(&t, &tag, 1 + a.senders, c.quiet).await?;
    let mut rooms = Vec::with_capacity(a.rooms);
    for r in 0..a.rooms {
        rooms.push(setup::create_room(&t, &users[0], &format!("bench {tag} p{r}"), a.keep).await?);
    }
    let joins: Vec<(usize, i64)> = (0..a.senders).map(|i| (1 + i, rooms[i % a.rooms])).collect();
    setup::join_many(&t, &users, &joins, c.quiet).await?;

    let sh = Shared::new();
    let mut conns: Vec<Ws> = Vec::with_capacity(a.senders);
    for i in 0..a.senders {
        match wsconn::connect(&t, &users[1 + i].cookie).await {
            Ok((ws, _)) => conns.push(ws),
            Err(e) => bail!("sender {i} cannot connect: {e:#}"),
        }
    }
    let pb = report::spinner("", c.quiet);
    let ticker = crate::load::ticker(pb.clone(), "persist".into(), sh.clone());
    let cpu = CpuMeter::start(&t);
    let start = Instant::now();
    let until = start + duration;
    let drain = Duration::from_secs_f64(a.drain);
    let prefix: Arc<str> = tag.clone().into();
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, ws)| {
            let (sh, prefix) = (sh.clone(), prefix.clone());
            let room_idx = i % a.rooms;
            let room = rooms[room_idx];
            tokio::spawn(sender(ws, i, room_idx, room, a.window, until, drain, sh, prefix, a.common.text_bytes))
        })
        .collect();
    let mut results = Vec::new();
    for h in tasks {
        match h.await {
            Ok(r) => results.push(r),
            Err(e) => sh.errors.add(format!("sender task failed: {e}")),
        }
    }
    let cpu_use = cpu.read();
    ticker.abort();
    pb.finish_and_clear();
    let log_tail = t.log_tail(10);
    t.stop();

    // Each room's acked seqs must be unique and contiguous.
    let (mut dup_seqs, mut gap_seqs) = (0u64, 0u64);
    for r in 0..a.rooms {
        let mut seqs: Vec<i64> = results.iter().filter(|s| s.room == r).flat_map(|s| s.seqs.iter().copied()).collect();
        seqs.sort_unstable();
        for w in seqs.windows(2) {
            match w[1] - w[0] {
                0 => dup_seqs += 1,
                1 => {}
                d => gap_seqs += (d - 1) as u64,
            }
        }
    }
    let cn = &sh.counters;
    let (sent, acked) = (Counters::get(&cn.sent), Counters::get(&cn.acked));
    let last_ack = results.iter().filter_map(|r| r.last_ack).max();
    let window_s = last_ack.map_or(duration.as_secs_f64(), |l| l.duration_since(start).as_secs_f64().max(1e-3));
    let per_s = (acked as f64 / window_s).round();
    let lat = Latency::of(&sh.latency.take());
    let errors = sh.errors.count();
    let unacked = sent.saturating_sub(acked);
    let ok = errors == 0 && unacked == 0 && dup_seqs == 0 && gap_seqs == 0 && acked > 0;
    let backend = match &c.database {
        Some(u) if u.starts_with("postgres") => "postgres",
        Some(_) => "custom",
        None if c.spawn => "sqlite",
        None => "unknown",
    };
    let mut human = vec![
        format!(
            "{} senders over {} rooms, window {}, {:.0} s, backend {backend}",
            a.senders,
            a.rooms,
            a.window,
            duration.as_secs_f64()
        ),
        format!(
            "stored (acked) {acked} messages in {window_s:.2} s: {per_s:.0} messages/s; sent {sent}, unacked {unacked}"
        ),
        format!("send-to-ack latency: {}", lat.line()),
        format!(
            "seq check: {dup_seqs} duplicate(s), {gap_seqs} missing; cpu % of one core, server/bench/others {}",
            cpu_use.short()
        ),
    ];
    for e in sh.errors.samples() {
        human.push(format!("error: {e}"));
    }
    if !ok && let Some(tail) = log_tail.filter(|s| !s.is_empty()) {
        human.push(format!("server log (last lines):\n{tail}"));
    }
    Ok(Outcome {
        workload: "persist",
        params: json!({
            "rooms": a.rooms, "senders": a.senders, "window": a.window, "keep": a.keep, "text_bytes": a.common.text_bytes,
            "duration_s": duration.as_secs_f64(), "backend": backend, "spawn": c.spawn,
            "database": c.database.as_deref().map(rtm::config::redact_url),
        }),
        results: json!({
            "sent": sent, "acked": acked, "unacked": unacked, "stored_per_s": per_s,
            "window_s": report::r3(window_s), "duplicate_seqs": dup_seqs, "missing_seqs": gap_seqs,
            "errors": errors, "ack_latency": lat, "cpu": cpu_use, "error_samples": sh.errors.samples(),
        }),
        ok,
        human,
    })
}

/// Keeps `window` sends in flight until `until`, then waits up to `drain` for the
/// remaining acks. Acks come back in send order on one connection.
#[allow(clippy::too_many_arguments)]
async fn sender(
    ws: Ws,
    conn: usize,
    room_idx: usize,
    room: i64,
    window: usize,
    until: Instant,
    drain: Duration,
    sh: Arc<Shared>,
    prefix: Arc<str>,
    text_bytes: usize,
) -> SenderResult {
    let (mut sink, mut source) = ws.split();
    let mut inflight: VecDeque<Instant> = VecDeque::with_capacity(window);
    let mut out = SenderResult { room: room_idx, seqs: Vec::new(), last_ack: None };
    let mut n = 0u64;
    let mut lat: Vec<u64> = Vec::with_capacity(window);
    loop {
        let sending = Instant::now() < until;
        if sending && inflight.len() < window {
            while inflight.len() < window {
                n += 1;
                let text = wsconn::bench_text_sized(sys::unix_micros(), conn, n, text_bytes);
                let msg = wsconn::send_frame(n, room, format!("{prefix}-{conn}-{n}"), text);
                if let Err(e) = sink.feed(msg).await {
                    sh.errors.add(format!("sender {conn}: write failed: {e}"));
                    return out;
                }
                inflight.push_back(Instant::now());
                Counters::add(&sh.counters.sent, 1);
            }
            if let Err(e) = sink.flush().await {
                sh.errors.add(format!("sender {conn}: flush failed: {e}"));
                return out;
            }
        }
        if !sending && inflight.is_empty() {
            break;
        }
        let deadline = if sending { until } else { until + drain };
        let msg = match tokio::time::timeout_at(deadline, source.next()).await {
            Err(_) if sending => continue,
            Err(_) => {
                sh.errors.add(format!("sender {conn}: {} send(s) never acked", inflight.len()));
                break;
            }
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(Message::Close(f)))) => {
                sh.errors.add(format!("sender {conn}: closed: {f:?}"));
                break;
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => {
                sh.errors.add(format!("sender {conn}: read failed: {e}"));
                break;
            }
            Ok(None) => {
                sh.errors.add(format!("sender {conn}: closed by the server"));
                break;
            }
        };
        let now = Instant::now();
        let mut acked = 0;
        let parsed = for_each_lite(msg.as_str(), |f| match f.ty.as_ref() {
            "ack" => {
                acked += 1;
                if let Some(t0) = inflight.pop_front() {
                    lat.push(now.duration_since(t0).as_micros() as u64);
                }
                match f.seq {
                    Some(s) if !f.duplicate => out.seqs.push(s),
                    _ => sh.errors.add(format!("sender {conn}: ack without a new seq")),
                }
            }
            "error" => {
                inflight.pop_front();
                sh.errors.add(format!("sender {conn}: error {}", f.code.as_deref().unwrap_or("?")));
            }
            "closing" => sh.errors.add(format!("sender {conn}: server closing: {}", f.code.as_deref().unwrap_or("?"))),
            _ => {}
        });
        if let Err(e) = parsed {
            sh.errors.add(format!("sender {conn}: undecodable frame: {e}"));
        }
        if acked > 0 {
            Counters::add(&sh.counters.acked, acked);
            out.last_ack = Some(now);
            sh.latency.record(conn, &lat);
            lat.clear();
        }
    }
    out
}
