//! `plot`: draws latency versus load as a small hand-written SVG (no plotting crate)
//! from fanout result lines: x is deliveries per second, y is latency in ms on a log
//! scale, one solid p99 line and one dashed p50 line per run, with the 20 ms target and
//! the 100 ms saturation limit marked.

use std::{fmt::Write as _, path::PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::report::Outcome;

#[derive(Args, Debug, Clone)]
pub struct PlotArgs {
    /// Files with rtm-bench JSON lines (fanout runs; other lines are ignored).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Where to write the SVG.
    #[arg(long, default_value = "docs/bench/fanout-latency.svg")]
    pub out: PathBuf,
    /// Chart title.
    #[arg(long, default_value = "RT Messenger fan-out: latency vs deliveries/s (2 cores, bench on the same machine)")]
    pub title: String,
}

/// One run's points: (deliveries/s, p50 ms, p99 ms).
struct Series {
    label: String,
    points: Vec<(f64, f64, f64)>,
}

const W: f64 = 860.0;
const H: f64 = 500.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"];

pub fn run(a: PlotArgs) -> Result<Outcome> {
    let mut series = Vec::new();
    for path in &a.inputs {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if v["workload"] != "fanout" {
                continue;
            }
            let p = &v["params"];
            let label = format!(
                "{}×{} ({} conns)",
                p["rooms"].as_u64().unwrap_or(0),
                p["members"].as_u64().unwrap_or(0),
                p["connections"].as_u64().unwrap_or(0)
            );
            let points: Vec<(f64, f64, f64)> = v["results"]["steps"]
                .as_array()
                .map(|steps| {
                    steps
                        .iter()
                        .filter_map(|s| {
                            Some((
                                s["deliveries_per_s"].as_f64()?,
                                s["latency"]["p50_ms"].as_f64()?,
                                s["latency"]["p99_ms"].as_f64()?,
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            if !points.is_empty() {
                series.push(Series { label, points });
            }
        }
    }
    if series.is_empty() {
        bail!("no fanout results with steps in the inputs");
    }
    let svg = draw(&a.title, &series);
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&a.out, svg).with_context(|| format!("cannot write {}", a.out.display()))?;
    Ok(Outcome {
        workload: "plot",
        params: json!({ "inputs": a.inputs, "out": a.out }),
        results: json!({ "series": series.len() }),
        ok: true,
        human: vec![format!("wrote {} ({} series)", a.out.display(), series.len())],
    })
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A round number ≥ x for the x-axis end (1, 2, 5 × 10^k).
fn nice_ceil(x: f64) -> f64 {
    let x = x.max(1.0);
    let mag = 10f64.powf(x.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * mag >= x {
            return m * mag;
        }
    }
    10.0 * mag
}

fn draw(title: &str, series: &[Series]) -> String {
    let x_max = nice_ceil(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).fold(0.0, f64::max) * 1.05);
    let y_hi = series.iter().flat_map(|s| s.points.iter().map(|p| p.2)).fold(100.0, f64::max);
    let (y_lo_exp, y_hi_exp) = (-1i32, (y_hi.log10().ceil() as i32).max(3));
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let px = |x: f64| LEFT + x / x_max * pw;
    let py = |ms: f64| {
        let l = ms.max(10f64.powi(y_lo_exp)).log10();
        TOP + ph - (l - y_lo_exp as f64) / (y_hi_exp - y_lo_exp) as f64 * ph
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="14">{}</text>"#,
        LEFT + pw / 2.0,
        esc(title)
    );
    // Horizontal grid: decades of latency.
    for e in y_lo_exp..=y_hi_exp {
        let v = 10f64.powi(e);
        let y = py(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            y + 4.0,
            if v < 1.0 { format!("{v}") } else { format!("{v:.0}") }
        );
    }
    // Vertical grid: five steps of load.
    for k in 0..=5 {
        let v = x_max * k as f64 / 5.0;
        let x = px(v);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + ph,
            TOP + ph + 18.0,
            if v >= 1000.0 { format!("{:.0}k", v / 1000.0) } else { format!("{v:.0}") }
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">deliveries per second</text>"#,
        LEFT + pw / 2.0,
        H - 15.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">latency, ms (log)</text>"#,
        TOP + ph / 2.0
    );
    for (ms, label, color) in [(20.0, "p99 target 20 ms", "#2ca02c"), (100.0, "saturation 100 ms", "#d62728")] {
        let y = py(ms);
        let _ = writeln!(
            s,
            r#"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{color}" stroke-dasharray="2,4"/><text x="{:.1}" y="{:.1}" fill="{color}" text-anchor="end">{label}</text>"#,
            LEFT + pw,
            LEFT + pw - 4.0,
            y - 4.0
        );
    }
    let _ = writeln!(s, r#"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#);
    for (i, se) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        for (which, dash) in [(2usize, ""), (1, r#" stroke-dasharray="6,4""#)] {
            let pts: Vec<String> = se
                .points
                .iter()
                .map(|p| {
                    let v = if which == 2 { p.2 } else { p.1 };
                    format!("{:.1},{:.1}", px(p.0), py(v))
                })
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
                pts.join(" ")
            );
            for p in &se.points {
                let v = if which == 2 { p.2 } else { p.1 };
                let _ = writeln!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#, px(p.0), py(v));
            }
        }
        let ly = TOP + 10.0 + i as f64 * 40.0;
        let lx = LEFT + pw + 12.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2"/><text x="{}" y="{}">{} p99</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0,
            esc(&se.label)
        );
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{}" x2="{}" y2="{}" stroke="{color}" stroke-width="2" stroke-dasharray="6,4"/><text x="{}" y="{}">{} p50</text>"#,
            ly + 16.0,
            lx + 24.0,
            ly + 16.0,
            lx + 30.0,
            ly + 20.0,
            esc(&se.label)
        );
    }
    s.push_str("</svg>\n");
    s
}
