//! What a run shows: progress bars on stderr while it runs (hidden when stderr is not
//! a terminal or the run is quiet), then a human summary and ONE JSON line on stdout
//! at the end (`--json` keeps only the JSON line). The JSON line always has
//! `workload`, `params`, `results` and `ok`; scripts read the last line.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// A counting bar (`n/len`) for setup phases.
pub fn bar(len: u64, msg: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg:<24} [{bar:30}] {pos}/{len} {elapsed}") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// A spinner whose message the caller updates (live counters while loading).
pub fn spinner(msg: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed}] {msg}") {
        pb.set_style(style);
    }
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// A latency distribution in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct Latency {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// Summarizes a histogram of microseconds.
    pub fn of(h: &hdrhistogram::Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            count: h.len(),
            mean_ms: r3(h.mean() / 1000.0),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }

    /// `p50 1.2 ms, p90 …` for the human summary.
    pub fn line(&self) -> String {
        format!(
            "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms ({} samples)",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms, self.count
        )
    }
}

/// The end of a run: what to print and whether it counts as a success.
pub struct Outcome {
    pub workload: &'static str,
    pub params: serde_json::Value,
    pub results: serde_json::Value,
    /// False when anything was lost or failed: the process exits non-zero.
    pub ok: bool,
    /// The human summary, one line each.
    pub human: Vec<String>,
}

impl Outcome {
    /// Prints the summary (unless `json_only`) and the JSON line.
    pub fn emit(&self, json_only: bool) {
        if !json_only {
            println!("== rtm-bench {} ==", self.workload);
            for l in &self.human {
                println!("{l}");
            }
            println!("result: {}", if self.ok { "OK" } else { "FAILED" });
        }
        let line = serde_json::json!({
            "workload": self.workload,
            "params": self.params,
            "results": self.results,
            "ok": self.ok,
        });
        println!("{line}");
    }
}

/// Rounds to 3 decimals for readable JSON.
pub fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
