//! `reconnect`: N clients in one room while a sender keeps sending; at one instant all
//! clients drop their sockets, stay away `--offline` seconds, reconnect and send
//! `resume` with the last seq they saw (following `more` until done). Measured: the
//! time from the reconnect instant (drop + offline) until each client has resumed
//! (the max is "all resumed").
//! Checked: every client ends with the room's events from the seq it first saw to the
//! sender's last, each exactly once and in order.
//!
//! A client applies events strictly in seq order. While a resume is under way, live
//! events are held and applied afterwards, skipping those the resume already gave
//! (an event can be both in the reply and live: it may be published just after the
//! reply read it). A live event repeated on one connection counts as a duplicate; a
//! skipped seq counts as lost. A client the server disconnects later (for example as a
//! slow consumer) reconnects and resumes too, as a real client would; that is counted.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use rtm::ws::protocol::{ClientFrame, ServerFrame, decode_server};
use serde_json::json;
use tokio::{sync::watch, time::Instant};
use tokio_tungstenite::tungstenite::Message;

use crate::{
    Common,
    fanout::opt,
    load::{self, Pace, Shared},
    report::{self, Outcome},
    setup,
    stats::{Counters, histogram},
    sys,
    target::{Endpoint, Target},
    wsconn::{self, Ws, for_each_lite},
};

#[derive(clap::Args, Debug, Clone)]
pub struct ReconnectArgs {
    #[command(flatten)]
    pub common: Common,
    /// Clients in the room.
    #[arg(long, default_value_t = 500)]
    pub clients: usize,
    /// The sender's messages per second.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Seconds after the start of sending when every client drops.
    #[arg(long, default_value_t = 2.0)]
    pub drop_after: f64,
    /// Seconds the clients stay away before reconnecting (messages pile up meanwhile).
    #[arg(long, default_value_t = 1.0)]
    pub offline: f64,
    /// Seconds to wait after the last send for every client to catch up.
    #[arg(long, default_value_t = 30.0)]
    pub drain: f64,
    /// Filler bytes in every message (large messages make a heavy resume).
    #[arg(long, default_value_t = 0)]
    pub pad: usize,
}

/// Signals from the conductor to the clients.
struct Ctl {
    /// Becomes true at the drop instant.
    drop_rx: watch::Receiver<bool>,
    /// Becomes true when the run ends.
    stop_rx: watch::Receiver<bool>,
    offline: Duration,
    /// The sender's last acked seq, once known (0 before).
    final_seq: AtomicI64,
    /// Clients connected (first time).
    connected: AtomicU64,
    /// Clients that have resumed after the drop.
    resumed: AtomicU64,
    /// Clients whose last applied seq reached `final_seq`.
    caught_up: AtomicU64,
    sh: Arc<Shared>,
}

/// What one client ends with.
#[derive(Default, Debug)]
struct Client {
    /// The room's last seq in the first hello: events after it must all arrive.
    start: i64,
    /// Last seq applied.
    last: i64,
    applied: u64,
    /// Seqs skipped (lost).
    missing: u64,
    /// Events seen twice where that must not happen.
    duplicates: u64,
    /// Reconnect instant (drop + offline) to resume complete, µs.
    resume_us: Option<u64>,
    /// Reconnects beyond the planned one.
    extra_reconnects: u64,
    counted_caught_up: bool,
}

impl Client {
    /// Applies an event that must be the next one (initial live stream, resume replies).
    fn apply_strict(&mut self, seq: i64) {
        if seq <= self.last {
            self.duplicates += 1;
            return;
        }
        self.missing += (seq - self.last - 1) as u64;
        self.last = seq;
        self.applied += 1;
    }

    /// Applies a live event after a resume: already-applied ones are the expected
    /// overlap with the reply and are skipped.
    fn apply_after_resume(&mut self, seq: i64) {
        if seq > self.last {
            self.apply_strict(seq);
        }
    }

    fn note_caught_up(&mut self, ctl: &Ctl) {
        let fin = ctl.final_seq.load(Ordering::Relaxed);
        if !self.counted_caught_up && fin > 0 && self.last >= fin {
            self.counted_caught_up = true;
            ctl.caught_up.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Kept events of `room` in a batch of frames, in order.
fn live_seqs(frames: &[ServerFrame], room: i64) -> impl Iterator<Item = i64> + '_ {
    frames.iter().filter_map(move |f| match f {
        ServerFrame::Message(e) | ServerFrame::Notice(e) if e.room == room => e.seq,
        _ => None,
    })
}

pub async fn run(a: ReconnectArgs) -> Result<Outcome> {
    let c = &a.common;
    if a.clients == 0 || a.rate <= 0.0 {
        bail!("need --clients ≥ 1 and a positive --rate");
    }
    let duration = Duration::from_secs_f64(c.duration.unwrap_or(8.0));
    let drop_after = Duration::from_secs_f64(a.drop_after);
    if drop_after + Duration::from_secs_f64(a.offline) >= duration {
        bail!("--drop-after + --offline must end before --duration");
    }
    let mut t = Target::open(c).await?;
    let tag = sys::random_tag();
    let n_users = c.users.unwrap_or(a.clients.min(200)).clamp(1, a.clients);
    // User 0 owns the room and sends; users 1..=n are the clients.
    let users = setup::register_many(&t, &tag, 1 + n_users, c.quiet).await?;
    let room = setup::create_room(&t, &users[0], &format!("bench {tag} rc"), 1_000_000).await?;
    let joins: Vec<(usize, i64)> = (1..=n_users).map(|u| (u, room)).collect();
    setup::join_many(&t, &users, &joins, c.quiet).await?;

    let sh = Shared::new();
    let (drop_tx, drop_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let ctl = Arc::new(Ctl {
        drop_rx,
        stop_rx,
        offline: Duration::from_secs_f64(a.offline),
        final_seq: AtomicI64::new(0),
        connected: AtomicU64::new(0),
        resumed: AtomicU64::new(0),
        caught_up: AtomicU64::new(0),
        sh: sh.clone(),
    });
    let drop_at: Arc<parking_lot::Mutex<Option<Instant>>> = Arc::default();
    let pb = report::bar(a.clients as u64, "connecting", c.quiet);
    let gate = Arc::new(tokio::sync::Semaphore::new(c.connect_concurrency.max(1)));
    let clients: Vec<_> = (0..a.clients)
        .map(|i| {
            let ep = t.node_ep(t.receiver_node(i)).clone();
            let cookie = users[1 + i % n_users].cookie.clone();
            let (ctl, drop_at, gate) = (ctl.clone(), drop_at.clone(), gate.clone());
            tokio::spawn(client(i, ep, cookie, room, ctl, drop_at, gate))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    while (ctl.connected.load(Ordering::Relaxed) as usize) < a.clients
        && sh.errors.count() == 0
        && Instant::now() < deadline
    {
        pb.set_position(ctl.connected.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pb.finish_and_clear();
    let all_connected = ctl.connected.load(Ordering::Relaxed) as usize == a.clients;

    let mut sender_stats = (0u64, 0u64, 0i64);
    let mut all_resumed_ms = None;
    if all_connected {
        // The sender: the room owner's connection, paced like fan-out senders.
        let (ws, _) = wsconn::connect(&t, &users[0].cookie).await.context("sender connect")?;
        let (sink, source) = ws.split();
        let max_seq = Arc::new(AtomicI64::new(0));
        let acks = tokio::spawn(read_acks(source, sh.clone(), max_seq.clone()));
        let pb = report::spinner("", c.quiet);
        let ticker = load::ticker(pb.clone(), "reconnect".into(), sh.clone());
        let start = Instant::now() + Duration::from_millis(50);
        let pace = Pace {
            conn: usize::MAX / 2,
            room,
            period: Duration::from_secs_f64(1.0 / a.rate),
            offset: Duration::ZERO,
            start,
            start_us: sys::unix_micros() + 50_000,
            until: start + duration,
            id_prefix: tag.clone().into(),
            pad: a.pad,
            text_bytes: 0,
            read: false,
        };
        let sender = load::spawn_sender(sink, pace, sh.clone());
        tokio::time::sleep_until(start + drop_after).await;
        *drop_at.lock() = Some(Instant::now());
        let _ = drop_tx.send(true);
        let sink = sender.await.context("sender task")?;
        // Every send acked, then every client caught up with the last one.
        let t0 = Instant::now();
        let drain = Duration::from_secs_f64(a.drain);
        while Counters::get(&sh.counters.acked) < Counters::get(&sh.counters.sent) && t0.elapsed() < drain {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ctl.final_seq.store(max_seq.load(Ordering::Relaxed), Ordering::Relaxed);
        while (ctl.caught_up.load(Ordering::Relaxed) as usize) < a.clients && t0.elapsed() < drain {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ticker.abort();
        pb.finish_and_clear();
        sender_stats =
            (Counters::get(&sh.counters.sent), Counters::get(&sh.counters.acked), max_seq.load(Ordering::Relaxed));
        sh.errors.set_stopping(true);
        drop(sink);
        acks.abort();
    }
    sh.errors.set_stopping(true);
    let _ = stop_tx.send(true);
    let mut outs = Vec::with_capacity(a.clients);
    for h in clients {
        match tokio::time::timeout(Duration::from_secs(10), h).await {
            Ok(Ok(o)) => outs.push(o),
            Ok(Err(e)) => sh.errors.add(format!("client task failed: {e}")),
            Err(_) => sh.errors.add("a client did not stop"),
        }
    }
    let log_tail = t.log_tail(10);
    t.stop();

    let (sent, acked, final_seq) = sender_stats;
    let mut hist = histogram();
    let (mut lost, mut dups, mut extra, mut incomplete) = (0u64, 0u64, 0u64, 0u64);
    for o in &outs {
        let want = (final_seq - o.start).max(0) as u64;
        lost += o.missing + want.saturating_sub(o.applied);
        dups += o.duplicates;
        extra += o.extra_reconnects;
        match o.resume_us {
            Some(us) => hist.saturating_record(us.max(1)),
            None => incomplete += 1,
        }
        if o.last != final_seq {
            incomplete += u64::from(o.resume_us.is_some());
        }
    }
    if !hist.is_empty() {
        all_resumed_ms = Some(report::r3(hist.max() as f64 / 1000.0));
    }
    let resume = report::Latency::of(&hist);
    let errors = sh.errors.count();
    let ok = all_connected
        && errors == 0
        && lost == 0
        && dups == 0
        && incomplete == 0
        && sent == acked
        && outs.len() == a.clients;
    let mut human = vec![
        format!(
            "{} clients ({} users) in one room; sender {} msg/s for {:.1} s; drop at {:.1} s, offline {:.1} s",
            a.clients,
            n_users,
            a.rate,
            duration.as_secs_f64(),
            a.drop_after,
            a.offline
        ),
        format!(
            "all resumed {} ms after reconnecting (drop + offline); per client: {}",
            opt(all_resumed_ms),
            resume.line()
        ),
        format!(
            "sender: sent {sent}, acked {acked}, last seq {final_seq}; clients: lost {lost}, duplicates {dups}, not caught up {incomplete}, extra reconnects {extra}, errors {errors}"
        ),
    ];
    for e in sh.errors.samples() {
        human.push(format!("error: {e}"));
    }
    if !ok && let Some(tail) = log_tail.filter(|s| !s.is_empty()) {
        human.push(format!("server log (last lines):\n{tail}"));
    }
    Ok(Outcome {
        workload: "reconnect",
        params: json!({
            "clients": a.clients, "users": n_users, "rate": a.rate,
            "duration_s": duration.as_secs_f64(), "drop_after_s": a.drop_after,
            "offline_s": a.offline, "spawn": c.spawn,
            "database": c.database.as_deref().map(rtm::config::redact_url),
        }),
        results: json!({
            "all_resumed_ms": all_resumed_ms, "resume": resume,
            "sent": sent, "acked": acked, "final_seq": final_seq,
            "lost": lost, "duplicates": dups, "not_caught_up": incomplete,
            "extra_reconnects": extra, "errors": errors, "error_samples": sh.errors.samples(),
        }),
        ok,
        human,
    })
}

/// Reads the sender's connection: counts acks and keeps the highest acked seq.
async fn read_acks(mut source: load::Source, sh: Arc<Shared>, max_seq: Arc<AtomicI64>) {
    while let Some(Ok(msg)) = source.next().await {
        let Message::Text(text) = msg else { continue };
        let mut acked = 0;
        let r = for_each_lite(text.as_str(), |f| match f.ty.as_ref() {
            "ack" => {
                acked += 1;
                if let Some(s) = f.seq {
                    max_seq.fetch_max(s, Ordering::Relaxed);
                }
            }
            "error" => sh.errors.add(format!("sender: error {}", f.code.as_deref().unwrap_or("?"))),
            _ => {}
        });
        if let Err(e) = r {
            sh.errors.add(format!("sender: undecodable frame: {e}"));
        }
        Counters::add(&sh.counters.acked, acked);
    }
}

/// Opens a connection, retrying a few times (a reconnect storm may be refused).
async fn connect_retrying(ep: &Endpoint, cookie: &str, gate: &tokio::sync::Semaphore) -> Result<(Ws, wsconn::Hello)> {
    let mut last = None;
    for attempt in 0..10u32 {
        let r = {
            let _permit = gate.acquire().await?;
            wsconn::connect(ep, cookie).await
        };
        match r {
            Ok(x) => return Ok(x),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt + 1))).await;
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("connect failed")))
}

/// One client's life: connect, follow the room, drop on signal, come back and resume,
/// follow again until told to stop.
async fn client(
    i: usize,
    ep: Endpoint,
    cookie: String,
    room: i64,
    ctl: Arc<Ctl>,
    drop_at: Arc<parking_lot::Mutex<Option<Instant>>>,
    gate: Arc<tokio::sync::Semaphore>,
) -> Client {
    let mut st = Client::default();
    let sh = ctl.sh.clone();
    let (mut ws, hello) = match connect_retrying(&ep, &cookie, &gate).await {
        Ok(x) => x,
        Err(e) => {
            sh.errors.add(format!("client {i}: {e:#}"));
            return st;
        }
    };
    let Some(start) = hello.last_seq(room) else {
        sh.errors.add(format!("client {i}: room missing from hello"));
        return st;
    };
    st.start = start;
    st.last = start;
    ctl.connected.fetch_add(1, Ordering::Relaxed);

    // Before the drop: follow live events strictly.
    let mut drop_rx = ctl.drop_rx.clone();
    loop {
        tokio::select! {
            _ = drop_rx.wait_for(|d| *d) => break,
            m = ws.next() => match frames_of(m) {
                Ok(frames) => live_seqs(&frames, room).for_each(|s| st.apply_strict(s)),
                Err(e) => {
                    sh.errors.add(format!("client {i} before the drop: {e:#}"));
                    return st;
                }
            },
        }
    }
    drop(ws);
    tokio::time::sleep(ctl.offline).await;

    let mut stop_rx = ctl.stop_rx.clone();
    let mut planned = true;
    loop {
        // (Re)connect and resume.
        let mut ws = match connect_retrying(&ep, &cookie, &gate).await {
            Ok((ws, _)) => ws,
            Err(e) => {
                sh.errors.add(format!("client {i}: reconnect: {e:#}"));
                return st;
            }
        };
        let mut live_last = match resume(&mut ws, room, &mut st).await {
            Ok(l) => l,
            Err(e) => {
                if !*stop_rx.borrow() {
                    sh.errors.add(format!("client {i}: resume: {e:#}"));
                }
                return st;
            }
        };
        if planned {
            planned = false;
            // From the common reconnect instant (drop + offline) to resumed.
            let at = *drop_at.lock();
            st.resume_us = at.map(|d| Instant::now().saturating_duration_since(d + ctl.offline).as_micros() as u64);
            ctl.resumed.fetch_add(1, Ordering::Relaxed);
        }
        st.note_caught_up(&ctl);
        // Follow live events until stopped or disconnected.
        let closed = loop {
            tokio::select! {
                _ = stop_rx.wait_for(|s| *s) => return st,
                m = ws.next() => match frames_of(m) {
                    Ok(frames) => {
                        for s in live_seqs(&frames, room) {
                            if s <= live_last {
                                st.duplicates += 1;
                                continue;
                            }
                            live_last = s;
                            st.apply_after_resume(s);
                        }
                        st.note_caught_up(&ctl);
                    }
                    Err(e) => break e,
                },
                _ = tokio::time::sleep(Duration::from_millis(200)) => st.note_caught_up(&ctl),
            }
        };
        if *stop_rx.borrow() {
            return st;
        }
        // Cut off (e.g. as a slow consumer): come back and resume like a real client.
        tracing_note(i, &closed);
        st.extra_reconnects += 1;
    }
}

/// Keeps the reason of an unplanned disconnect out of the error count (it is
/// recovered from), but visible when debugging with RTM_BENCH_DEBUG set.
fn tracing_note(i: usize, e: &anyhow::Error) {
    if std::env::var_os("RTM_BENCH_DEBUG").is_some() {
        eprintln!("client {i} disconnected: {e:#}");
    }
}

/// Decodes one WebSocket read into server frames; a close or an error is an `Err`.
fn frames_of(m: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) -> Result<Vec<ServerFrame>> {
    match m {
        Some(Ok(Message::Text(t))) => {
            let frames = decode_server(t.as_str()).context("undecodable server frame")?;
            if let Some(ServerFrame::Closing { code, .. }) =
                frames.iter().find(|f| matches!(f, ServerFrame::Closing { .. }))
            {
                bail!("server closing: {code}");
            }
            Ok(frames)
        }
        Some(Ok(Message::Close(f))) => bail!("closed: {f:?}"),
        Some(Ok(_)) => Ok(Vec::new()),
        Some(Err(e)) => Err(e).context("read failed"),
        None => bail!("closed by the server"),
    }
}

/// Asks for everything after `st.last` until the server says there is no more; live
/// events that arrive meanwhile are applied afterwards (minus the overlap). Returns the
/// last live seq seen on this connection (live events only ever grow on one socket).
async fn resume(ws: &mut Ws, room: i64, st: &mut Client) -> Result<i64> {
    let mut held: Vec<i64> = Vec::new();
    let mut live_last = 0i64;
    let mut k = 0u32;
    let ask = |k: u32, after: i64| wsconn::frame(&ClientFrame::Resume { id: format!("resume-{k}"), room, after });
    ws.send(ask(k, st.last)).await.context("send resume")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut done = false;
    while !done {
        let m = tokio::time::timeout_at(deadline, ws.next()).await.context("no resume reply within 60 s")?;
        // Frames after the final reply in the same batch are live: they are held too.
        for f in frames_of(m)? {
            match f {
                ServerFrame::Resumed { id, events, more, .. } if !done && id == format!("resume-{k}") => {
                    for e in &events {
                        if let Some(s) = e.seq {
                            st.apply_strict(s);
                        }
                    }
                    if more {
                        k += 1;
                        ws.send(ask(k, st.last)).await.context("send resume")?;
                    } else {
                        done = true;
                    }
                }
                ServerFrame::Gap { earliest_seq, last_seq, .. } => {
                    bail!("gap: history starts at {earliest_seq:?}, we had {} (last {last_seq})", st.last)
                }
                ServerFrame::Error { code, message, .. } => bail!("error {code}: {message}"),
                ServerFrame::Message(e) | ServerFrame::Notice(e) if e.room == room => {
                    if let Some(s) = e.seq {
                        if s <= live_last {
                            st.duplicates += 1;
                        } else {
                            live_last = s;
                            held.push(s);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    for s in held {
        st.apply_after_resume(s);
    }
    Ok(live_last)
}
