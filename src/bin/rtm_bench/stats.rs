//! Shared measurement state of a run: counters every client task bumps, a log of
//! errors (a count plus the first few messages, for the summary), and latency
//! histograms. Histograms are sharded (a connection records into shard `conn % N`
//! under a short lock, once per received WebSocket frame) and merged at the end:
//! one histogram per task would cost ~150 KB each, 1.5 GB at 10,000 connections.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hdrhistogram::Histogram;
use parking_lot::Mutex;

/// Highest latency a histogram tracks (larger values are clamped to it): 5 minutes.
const MAX_MICROS: u64 = 300_000_000;
/// Number of histogram shards.
const SHARDS: usize = 64;
/// Error messages kept for the summary.
const SAMPLES: usize = 8;

/// A fresh latency histogram in microseconds (1 µs .. 5 min, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, MAX_MICROS, 3) {
        Ok(h) => h,
        // The bounds are constants that hdrhistogram accepts.
        Err(e) => panic!("histogram bounds rejected: {e}"),
    }
}

/// Latency histograms shared by many tasks.
pub struct Latencies {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Latencies {
    pub fn new() -> Self {
        Latencies { shards: (0..SHARDS).map(|_| Mutex::new(histogram())).collect() }
    }

    /// Records the latencies (µs) one connection measured in one frame.
    pub fn record(&self, conn: usize, values: &[u64]) {
        if values.is_empty() {
            return;
        }
        let mut h = self.shards[conn % SHARDS].lock();
        for v in values {
            h.saturating_record((*v).max(1));
        }
    }

    /// Merges the shards into one histogram and empties them (between load steps).
    pub fn take(&self) -> Histogram<u64> {
        let mut all = histogram();
        for s in &self.shards {
            let mut h = s.lock();
            // Same bounds everywhere: adding cannot fail.
            let _ = all.add(&*h);
            h.reset();
        }
        all
    }
}

/// Counters of a run (or of one load step).
#[derive(Default)]
pub struct Counters {
    /// Sends written to a socket.
    pub sent: AtomicU64,
    /// Sends the server acknowledged (stored, with a seq).
    pub acked: AtomicU64,
    /// Bench messages received by members (each delivery counts once).
    pub received: AtomicU64,
    /// Deliveries a connection had already seen (same or older seq).
    pub duplicates: AtomicU64,
    /// Deliveries whose seq skipped ahead on a connection.
    pub gaps: AtomicU64,
    /// Open connections.
    pub open: AtomicU64,
    /// Pongs received (liveness check).
    pub pongs: AtomicU64,
    /// `presence_change` objects received (not reset between steps: most arrive while
    /// connecting).
    pub presence_changes: AtomicU64,
    /// WebSocket messages that held at least one `presence_change` (a write each).
    pub presence_frames: AtomicU64,
}

impl Counters {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    /// Zeroes the per-step counters (not `open`).
    pub fn reset_step(&self) {
        for c in [&self.sent, &self.acked, &self.received, &self.duplicates, &self.gaps, &self.pongs] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// Errors seen during a run: how many, and the first few messages.
#[derive(Default)]
pub struct ErrorLog {
    count: AtomicU64,
    samples: Mutex<Vec<String>>,
    /// Set while the run tears connections down on purpose: closes are not errors then.
    pub stopping: AtomicBool,
}

impl ErrorLog {
    pub fn add(&self, msg: impl Into<String>) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut s = self.samples.lock();
        if s.len() < SAMPLES {
            s.push(msg.into());
        }
    }
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
    pub fn samples(&self) -> Vec<String> {
        self.samples.lock().clone()
    }
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }
    pub fn set_stopping(&self, v: bool) {
        self.stopping.store(v, Ordering::Relaxed);
    }
}
