//! Operator metrics: `GET /metrics` in the Prometheus text format, served on its own
//! listener (`--metrics-listen`), never on the public one. The figures of the hot path
//! (deliveries, outbox writes, commands, room cache, bus traffic) are plain static
//! atomics bumped with one relaxed add, so counting costs no lock, lookup or
//! allocation per frame and works whether or not metrics are served; a scrape copies
//! them, with the gauges read from the parts (connections, slow consumers, RSS), into
//! the `metrics` recorder of `metrics-exporter-prometheus`, which formats the page.
//! Histograms (pipeline batch sizes, store and pool waits) are recorded per batch
//! or per transaction through the `metrics` macros, which cost nothing while no
//! recorder is installed (no `--metrics-listen`).

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::{
    app::AppState,
    ws::protocol::{ClientFrame, DecodeError},
};

/// A counter of the hot path: one relaxed atomic add, read at scrape time.
pub struct Count(AtomicU64);

impl Count {
    const fn new() -> Self {
        Count(AtomicU64::new(0))
    }
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    #[inline]
    pub fn add(&self, n: usize) {
        self.0.fetch_add(n as u64, Ordering::Relaxed);
    }
    #[inline]
    pub fn set(&self, n: usize) {
        self.0.store(n as u64, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Frames handed to connections' outboxes by the hub (one per subscriber per event).
pub static DELIVERIES: Count = Count::new();
/// Socket writes of outboxes: one frame, a coalesced batch, or a remainder.
pub static OUTBOX_WRITES: Count = Count::new();
/// Room lookups answered from the room cache / loaded from the store.
pub static ROOM_CACHE_HITS: Count = Count::new();
pub static ROOM_CACHE_MISSES: Count = Count::new();
/// Redis bus: messages PUBLISHed, messages received (own ones included), and the
/// received pushes waiting to be handled (how far this node lags behind Redis).
pub static BUS_PUBLISHED: Count = Count::new();
pub static BUS_RECEIVED: Count = Count::new();
pub static BUS_RECEIVE_BACKLOG: Count = Count::new();
/// Appends of plain messages by the database's short path (one statement on
/// PostgreSQL, one or two calls on SQLite), and short attempts undone and taken again
/// by the general path (a retried send; a room that keeps few messages, written by
/// another node at that moment).
pub static APPENDS_SHORT: Count = Count::new();
pub static APPENDS_RETAKEN: Count = Count::new();

/// The command types counted; anything newer counts as `other` until listed here.
const COMMANDS: [&str; 13] = [
    "send", "history", "resume", "join", "leave", "typing", "read", "ping", "edit", "delete", "react", "notify",
    "other",
];
static COMMAND_COUNTS: [Count; COMMANDS.len()] = [const { Count::new() }; COMMANDS.len()];

/// Counts one decoded WebSocket command by its type.
#[inline]
pub fn command(f: &ClientFrame) {
    #[allow(unreachable_patterns)]
    let i = match f {
        ClientFrame::Send { .. } => 0,
        ClientFrame::History { .. } => 1,
        ClientFrame::Resume { .. } => 2,
        ClientFrame::Join { .. } => 3,
        ClientFrame::Leave { .. } => 4,
        ClientFrame::Typing { .. } => 5,
        ClientFrame::Read { .. } => 6,
        ClientFrame::Ping { .. } => 7,
        ClientFrame::Edit { .. } => 8,
        ClientFrame::Delete { .. } => 9,
        ClientFrame::React { .. } => 10,
        ClientFrame::Notify { .. } => 11,
        _ => 12,
    };
    COMMAND_COUNTS[i].inc();
}

/// Counts one command answered with an error, by its stable code (errors are the
/// rare path: the recorder's lookup is fine here).
pub fn command_error(code: &'static str) {
    counter!("rtm_command_errors_total", "code" => code).increment(1);
}

/// Counts a decoded command by type, or an undecodable one by its error code.
#[inline]
pub fn decoded(r: Result<ClientFrame, DecodeError>) -> Result<ClientFrame, DecodeError> {
    match &r {
        Ok(f) => command(f),
        Err(e) => command_error(e.code),
    }
    r
}

/// Records the size of one pipeline batch (messages kept in one transaction).
pub fn batch(size: usize) {
    histogram!("rtm_pipeline_batch_size").record(size as f64);
}

/// Runs a store call and records how long it took under `op`.
pub async fn timed<T>(op: &'static str, fut: impl Future<Output = T>) -> T {
    let start = Instant::now();
    let out = fut.await;
    histogram!("rtm_store_seconds", "op" => op).record(start.elapsed().as_secs_f64());
    out
}

/// Times a wait for the database's writer connection (pool wait plus `BEGIN`):
/// recorded when dropped.
pub struct PoolWait(Instant);

impl PoolWait {
    pub fn start() -> Self {
        PoolWait(Instant::now())
    }
}

impl Drop for PoolWait {
    fn drop(&mut self) {
        histogram!("rtm_pool_wait_seconds").record(self.0.elapsed().as_secs_f64());
    }
}

/// Store latency buckets (seconds): 50 µs to 5 s.
const SECONDS: [f64; 14] =
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];
const BATCH: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// The process-wide recorder, installed once, the first time metrics are served.
static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full("rtm_pipeline_batch_size".into()), &BATCH));
            let recorder = match builder {
                Ok(b) => b.build_recorder(),
                Err(e) => {
                    tracing::error!(error = %e, "cannot set up the metrics recorder");
                    return None;
                }
            };
            let handle = recorder.handle();
            if let Err(e) = metrics::set_global_recorder(recorder) {
                tracing::error!(error = %e, "another metrics recorder is installed: /metrics stays empty");
                return None;
            }
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    describe_gauge!("rtm_connections_open", "WebSocket connections open on this node");
    describe_counter!("rtm_deliveries_total", "frames handed to connections' outboxes (one per subscriber per event)");
    describe_counter!(
        "rtm_outbox_writes_total",
        "socket writes of outboxes (a frame, a coalesced batch or a remainder)"
    );
    describe_counter!("rtm_slow_consumers_total", "connections cut off because their outbox was full");
    describe_counter!("rtm_commands_total", "WebSocket commands received, by type");
    describe_counter!("rtm_command_errors_total", "WebSocket commands answered with an error, by code");
    describe_histogram!("rtm_pipeline_batch_size", "messages kept in one pipeline transaction");
    describe_histogram!("rtm_store_seconds", "time of store calls on the message path, by operation");
    describe_histogram!("rtm_pool_wait_seconds", "time to get the writer connection and begin a write transaction");
    describe_counter!("rtm_room_cache_hits_total", "room lookups answered from the room cache");
    describe_counter!("rtm_room_cache_misses_total", "room lookups that read the store");
    describe_counter!(
        "rtm_store_appends_total",
        "message batches stored by the short path (short) or retaken by the general path after trying it (retaken)"
    );
    describe_gauge!("rtm_bus_up", "1 when the bus is in-process or this node's Redis link is up, else 0");
    describe_counter!("rtm_bus_published_total", "messages published to Redis (one per room per commit)");
    describe_counter!("rtm_bus_received_total", "messages received from Redis (this node's own publications included)");
    describe_gauge!("rtm_bus_receive_backlog", "messages received from Redis not handled yet");
    describe_gauge!("process_resident_memory_bytes", "resident set size of this process");
}

/// The process's resident set size, from /proc (Linux); `None` elsewhere.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The page: the hot-path atomics and the gauges copied into the recorder, then
/// rendered.
fn render(state: &AppState, handle: &PrometheusHandle) -> String {
    gauge!("rtm_connections_open").set(state.hub.connection_count() as f64);
    counter!("rtm_deliveries_total").absolute(DELIVERIES.get());
    counter!("rtm_outbox_writes_total").absolute(OUTBOX_WRITES.get());
    counter!("rtm_slow_consumers_total").absolute(state.hub.slow_consumers.load(Ordering::Relaxed));
    for (name, n) in COMMANDS.iter().zip(&COMMAND_COUNTS) {
        counter!("rtm_commands_total", "type" => *name).absolute(n.get());
    }
    counter!("rtm_room_cache_hits_total").absolute(ROOM_CACHE_HITS.get());
    counter!("rtm_room_cache_misses_total").absolute(ROOM_CACHE_MISSES.get());
    counter!("rtm_store_appends_total", "path" => "short").absolute(APPENDS_SHORT.get());
    counter!("rtm_store_appends_total", "path" => "retaken").absolute(APPENDS_RETAKEN.get());
    gauge!("rtm_bus_up").set(if state.chat.bus.health() == "down" { 0.0 } else { 1.0 });
    if state.chat.bus.shared() {
        counter!("rtm_bus_published_total").absolute(BUS_PUBLISHED.get());
        counter!("rtm_bus_received_total").absolute(BUS_RECEIVED.get());
        gauge!("rtm_bus_receive_backlog").set(BUS_RECEIVE_BACKLOG.get() as f64);
    }
    if let Some(rss) = rss_bytes() {
        gauge!("process_resident_memory_bytes").set(rss as f64);
    }
    handle.run_upkeep();
    handle.render()
}

async fn metrics_page(State((state, handle)): State<(AppState, &'static PrometheusHandle)>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], render(&state, handle))
}

/// Serves `GET /metrics` on `addr` until `stop` changes. Returns the bound address, or
/// the error binding it.
pub async fn serve(
    addr: SocketAddr,
    state: AppState,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let Some(handle) = install() else {
        return Err(std::io::Error::other("the metrics recorder could not be installed"));
    };
    let app = Router::new().route("/metrics", get(metrics_page)).with_state((state, handle));
    tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.changed().await;
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopped).await {
            tracing::warn!(error = %e, "the metrics listener failed");
        }
    });
    tracing::info!(addr = %bound, "serving metrics");
    Ok(bound)
}
