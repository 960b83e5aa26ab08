//! `search`: full-text search latency over a large history (issue 13). The database
//! is filled BEFORE the server starts (`history.rs`: through the server's own Store
//! API, synthetic text shaped like chat, rooms of uneven activity, six months of
//! timestamps). The searching users are members of a random subset of the rooms.
//!
//! Then the server is started on that database, the searchers sign in, and queries go
//! over HTTP at a fixed rate (open loop: a query's latency counts from when it was due,
//! so a slow server is not hidden by a slow sender): two-word queries (both words must
//! match) and one-word prefix queries (what the search box sends while one types). The
//! result is queries/s, latency percentiles per kind, and the server's CPU per query
//! (plus the database's, for a PostgreSQL this process started).

use std::{
    collections::HashSet,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result, bail};
use clap::Args;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use rtm::store::DynStore;
use serde_json::json;
use tokio::time::Instant;

use crate::{
    Common,
    cluster::Postgres,
    history::{self, PASSWORD, Rng, Zipf, vocabulary},
    http,
    load::CpuMeter,
    report::{self, Latency, Outcome},
    stats, sys,
    target::{Endpoint, Target},
};

/// The most common words, left out of queries (nobody searches for "the").
const STOP_RANKS: usize = 20;
/// Results asked for per query (the web client's page).
const LIMIT: usize = 20;

#[derive(Args, Debug, Clone)]
pub struct SearchArgs {
    #[command(flatten)]
    pub common: Common,
    /// Messages to store before the server starts.
    #[arg(long, default_value_t = 1_000_000)]
    pub messages: usize,
    /// Rooms the messages are spread over (unevenly: a few busy, many quiet).
    #[arg(long, default_value_t = 400)]
    pub rooms: usize,
    /// Accounts that wrote the messages (each room has a few of them as members).
    #[arg(long, default_value_t = 200)]
    pub authors: usize,
    /// Searching accounts (the server allows each 100 searches/s; queries go to them
    /// in turn).
    #[arg(long, default_value_t = 4)]
    pub searchers: usize,
    /// Rooms each searcher is a member of (chosen at random).
    #[arg(long, default_value_t = 40)]
    pub member_rooms: usize,
    /// Messages per `append` call while filling.
    #[arg(long, default_value_t = 5000)]
    pub batch: usize,
    /// Queries per second.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Share of the queries that are one-word prefixes (the rest are two words).
    #[arg(long, default_value_t = 0.25)]
    pub prefix_share: f64,
    /// Seconds of queries before the measurement (not counted).
    #[arg(long, default_value_t = 3.0)]
    pub warmup: f64,
    /// Queries in flight at most; a query due while this many are pending is skipped
    /// (and counted: the server did not keep up).
    #[arg(long, default_value_t = 64)]
    pub max_inflight: usize,
    /// Start a throwaway PostgreSQL of our own for the server's database (its CPU is
    /// reported apart) instead of SQLite.
    #[arg(long, conflicts_with = "database")]
    pub postgres: bool,
    /// Seed of the text and query generator (same seed, same data and queries).
    #[arg(long, default_value_t = 13)]
    pub seed: u64,
}

/// A query: (kind, text as typed). Two-word queries end with a space (both words whole);
/// a prefix query is the first 3 letters of a word, as typed.
fn query(rng: &mut Rng, vocab: &[String], zipf: &Zipf, prefix_share: f64) -> (Kind, String) {
    let word = |rng: &mut Rng| loop {
        let r = zipf.sample(rng);
        if r >= STOP_RANKS {
            return vocab[r].clone();
        }
    };
    if rng.unit() < prefix_share {
        let w = word(rng);
        (Kind::Prefix, w.chars().take(3).collect())
    } else {
        let (a, b) = (word(rng), word(rng));
        (Kind::TwoWords, format!("{a} {b} "))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    TwoWords,
    Prefix,
}

/// Removes the data directory at the end (also on errors), unless RTM_BENCH_KEEP is set.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("RTM_BENCH_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// What the fill did.
struct Filled {
    secs: f64,
    searchers: Vec<String>,
    /// Messages stored in the rooms the searchers are in (what they search over).
    visible: Vec<u64>,
}

async fn fill(store: &DynStore, a: &SearchArgs, vocab: &[String], rng: &mut Rng, quiet: bool) -> Result<Filled> {
    let spec = history::Spec { messages: a.messages, rooms: a.rooms, authors: a.authors, batch: a.batch };
    let h = history::store(store, &spec, vocab, rng, quiet).await?;
    let t0 = Instant::now();
    // Searchers, each in a random subset of the rooms.
    let mut searchers = Vec::with_capacity(a.searchers);
    let mut visible = Vec::with_capacity(a.searchers);
    for i in 0..a.searchers {
        let name = format!("s{}-q{i}", h.tag);
        let id = store.create_user(history::account(name.clone(), &h.hash, h.now)).await?.id;
        let mut set = HashSet::new();
        while set.len() < a.member_rooms.min(a.rooms) {
            set.insert(rng.below(a.rooms));
        }
        for r in &set {
            store.add_member(h.rooms[*r], id, h.now).await?;
        }
        visible.push(set.iter().map(|r| h.per_room[*r]).sum());
        searchers.push(name);
    }
    Ok(Filled { secs: h.secs + t0.elapsed().as_secs_f64(), searchers, visible })
}

/// Signs in one searcher; returns its session cookie.
async fn login(t: &Endpoint, username: &str) -> Result<String> {
    let body = json!({ "login": username, "password": PASSWORD }).to_string();
    let r = http::request(t, "POST", "/api/login", None, Some(&body)).await?;
    if r.status != 200 {
        bail!("sign-in of {username}: HTTP {} {}", r.status, r.body);
    }
    r.cookies
        .iter()
        .find(|c| c.split('=').next().is_some_and(|k| k.ends_with("rtm_session")))
        .cloned()
        .with_context(|| format!("sign-in of {username}: no session cookie"))
}

/// Measurements of one phase.
struct Phase {
    two: Mutex<Histogram<u64>>,
    prefix: Mutex<Histogram<u64>>,
    done: AtomicU64,
    skipped: AtomicU64,
    results: AtomicU64,
    empty: AtomicU64,
    errors: stats::ErrorLog,
}

impl Phase {
    fn new() -> Arc<Phase> {
        Arc::new(Phase {
            two: Mutex::new(stats::histogram()),
            prefix: Mutex::new(stats::histogram()),
            done: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            results: AtomicU64::new(0),
            empty: AtomicU64::new(0),
            errors: stats::ErrorLog::default(),
        })
    }
}

/// Sends queries at `rate` for `secs`, each due at its own time; returns when all are
/// answered (each request has its own timeout).
#[allow(clippy::too_many_arguments)]
async fn run_phase(
    ep: &Endpoint,
    cookies: &[String],
    queries: &[(Kind, String)],
    next_query: &mut usize,
    rate: f64,
    secs: f64,
    max_inflight: usize,
) -> Arc<Phase> {
    let ph = Phase::new();
    let inflight = Arc::new(AtomicU64::new(0));
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for i in 0u32.. {
        let due = start + period * i;
        if due >= until {
            break;
        }
        tokio::time::sleep_until(due).await;
        let (kind, q) = queries[*next_query % queries.len()].clone();
        let cookie = cookies[*next_query % cookies.len()].clone();
        *next_query += 1;
        if inflight.load(Ordering::Relaxed) as usize >= max_inflight {
            ph.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        inflight.fetch_add(1, Ordering::Relaxed);
        let (ph, inflight, ep) = (ph.clone(), inflight.clone(), ep.clone());
        tasks.push(tokio::spawn(async move {
            let path = format!(
                "/api/search?q={}&limit={LIMIT}",
                url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
            );
            let r = http::request(&ep, "GET", &path, Some(&cookie), None).await;
            let us = due.elapsed().as_micros() as u64;
            inflight.fetch_sub(1, Ordering::Relaxed);
            match r {
                Ok(r) if r.status == 200 => {
                    let n = r.json()["results"].as_array().map_or(0, Vec::len) as u64;
                    ph.results.fetch_add(n, Ordering::Relaxed);
                    if n == 0 {
                        ph.empty.fetch_add(1, Ordering::Relaxed);
                    }
                    let h = if kind == Kind::TwoWords { &ph.two } else { &ph.prefix };
                    h.lock().saturating_record(us.max(1));
                    ph.done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(r) => ph.errors.add(format!("search {q:?}: HTTP {} {}", r.status, r.body)),
                Err(e) => ph.errors.add(format!("search {q:?}: {e:#}")),
            }
        }));
    }
    for t in tasks {
        if let Err(e) = t.await {
            ph.errors.add(format!("query task failed: {e}"));
        }
    }
    ph
}

pub async fn run(a: SearchArgs) -> Result<Outcome> {
    let c = &a.common;
    if !c.spawn {
        bail!("search fills a fresh database before the server starts: give --spawn");
    }
    if c.history > 0 {
        bail!("search stores its own history (--messages); --history is for the other workloads");
    }
    if a.messages == 0 || a.messages > 10_000_000 {
        bail!("--messages must be 1..=10000000");
    }
    if a.rooms == 0 || a.authors == 0 || a.searchers == 0 || a.member_rooms == 0 || a.batch == 0 {
        bail!("--rooms, --authors, --searchers, --member-rooms and --batch must be ≥ 1");
    }
    if !(0.1..=5000.0).contains(&a.rate) || !(0.0..=1.0).contains(&a.prefix_share) {
        bail!("--rate must be 0.1..=5000 and --prefix-share 0..=1");
    }
    let duration = c.duration.unwrap_or(30.0);
    let dir =
        TempDir(std::env::temp_dir().join(format!("rtm-bench-search-{}-{}", std::process::id(), sys::random_tag())));
    std::fs::create_dir_all(&dir.0).with_context(|| format!("cannot create {}", dir.0.display()))?;
    if !a.postgres && !c.pg_conf.is_empty() {
        bail!("--pg-conf sets up the PostgreSQL of --postgres");
    }
    // Declared after `dir`, so dropped (stopped) before the directory is removed.
    let pg = if a.postgres { Some(Postgres::start(&dir.0, 50, &c.pg_conf)?) } else { None };
    let url = match (&pg, &c.database) {
        (Some(pg), _) => pg.url.clone(),
        (None, Some(u)) => u.clone(),
        (None, None) => format!("sqlite:{}", dir.0.join("rtm.db").display()),
    };
    let backend = if url.starts_with("sqlite") {
        "sqlite"
    } else if url.starts_with("postgres") {
        crate::cluster::record_postgres_settings(&url).await?;
        "postgres"
    } else {
        "mysql"
    };

    let mut rng = Rng(a.seed);
    let vocab = vocabulary(&mut rng);
    let store = rtm::store::connect(&url, 4).await.context("cannot open the database")?;
    let filled = fill(&store, &a, &vocab, &mut rng, c.quiet).await?;
    drop(store);
    history::analyze(&url).await?;
    let fill_rate = a.messages as f64 / filled.secs.max(1e-3);
    if !c.quiet {
        eprintln!("stored {} messages in {:.1} s ({fill_rate:.0}/s); starting the server", a.messages, filled.secs);
    }

    let mut common = c.clone();
    common.database = Some(url.clone());
    let mut t = Target::open(&common).await?;
    t.postgres_pid = pg.as_ref().map(|p| p.pid);
    let mut cookies = Vec::with_capacity(filled.searchers.len());
    for s in &filled.searchers {
        cookies.push(login(&t, s).await?);
    }
    // The queries, drawn in advance so drawing them costs nothing while measuring.
    let word_zipf = Zipf::new(vocab.len(), 1.0);
    let total = ((a.warmup + duration) * a.rate).ceil() as usize + 1;
    let queries: Vec<(Kind, String)> =
        (0..total).map(|_| query(&mut rng, &vocab, &word_zipf, a.prefix_share)).collect();
    let mut next = 0usize;
    let ep: Endpoint = (*t).clone();
    if a.warmup > 0.0 {
        run_phase(&ep, &cookies, &queries, &mut next, a.rate, a.warmup, a.max_inflight).await;
    }
    let cpu = CpuMeter::start(&t);
    let t0 = Instant::now();
    let ph = run_phase(&ep, &cookies, &queries, &mut next, a.rate, duration, a.max_inflight).await;
    let wall = t0.elapsed().as_secs_f64();
    let cpu_use = cpu.read();
    let log_tail = t.log_tail(10);
    t.stop();
    drop(pg);

    let done = ph.done.load(Ordering::Relaxed);
    let skipped = ph.skipped.load(Ordering::Relaxed);
    let errors = ph.errors.count();
    let (two, prefix) = (ph.two.lock().clone(), ph.prefix.lock().clone());
    let mut all = two.clone();
    let _ = all.add(&prefix);
    let (lat_all, lat_two, lat_prefix) = (Latency::of(&all), Latency::of(&two), Latency::of(&prefix));
    let qps = done as f64 / wall.max(1e-3);
    let (server_us, bench_us) = cpu_use.us_per(done);
    let pg_us = cpu_use.postgres.filter(|_| done > 0).map(|p| report::r3(p / 100.0 * cpu_use.secs / done as f64 * 1e6));
    let mean_results = if done > 0 { ph.results.load(Ordering::Relaxed) as f64 / done as f64 } else { 0.0 };
    let empty = ph.empty.load(Ordering::Relaxed);
    let ok = errors == 0 && done > 0;
    let visible_mean = filled.visible.iter().sum::<u64>() as f64 / filled.visible.len().max(1) as f64;
    let f1 = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.0}"));
    let mut human = vec![
        format!(
            "{} messages in {} rooms by {} authors, backend {backend}; {} searchers in {} rooms each (≈{visible_mean:.0} messages visible to each)",
            a.messages, a.rooms, a.authors, a.searchers, a.member_rooms
        ),
        format!("fill through the Store API: {:.1} s, {fill_rate:.0} messages/s", filled.secs),
        format!(
            "{done} queries in {wall:.1} s at {} /s asked: {qps:.1} queries/s; {skipped} skipped (over {} in flight), {errors} errors",
            a.rate, a.max_inflight
        ),
        format!("all queries: {}", lat_all.line()),
        format!("two words:   {}", lat_two.line()),
        format!("prefix:      {}", lat_prefix.line()),
        format!("results per query {mean_results:.1} (limit {LIMIT}), {empty} queries found nothing"),
        format!(
            "cpu % of one core, server/bench/others {}; server {} µs per query, bench {} µs{}",
            cpu_use.short(),
            f1(server_us),
            f1(bench_us),
            pg_us.map_or(String::new(), |p| format!(", postgres {p:.0} µs per query"))
        ),
    ];
    for e in ph.errors.samples() {
        human.push(format!("error: {e}"));
    }
    if !ok && let Some(tail) = log_tail.filter(|s| !s.is_empty()) {
        human.push(format!("server log (last lines):\n{tail}"));
    }
    Ok(Outcome {
        workload: "search",
        params: json!({
            "messages": a.messages, "rooms": a.rooms, "authors": a.authors, "searchers": a.searchers,
            "member_rooms": a.member_rooms, "rate": a.rate, "prefix_share": a.prefix_share,
            "duration_s": duration, "warmup_s": a.warmup, "seed": a.seed, "batch": a.batch,
            "backend": backend, "database": rtm::config::redact_url(&url), "limit": LIMIT,
        }),
        results: json!({
            "fill_s": report::r3(filled.secs), "fill_per_s": fill_rate.round(),
            "visible_messages": filled.visible,
            "queries": done, "queries_per_s": report::r3(qps), "skipped": skipped, "errors": errors,
            "latency": lat_all, "two_words": lat_two, "prefix": lat_prefix,
            "mean_results": report::r3(mean_results), "empty_results": empty,
            "cpu": cpu_use, "server_us_per_query": server_us, "bench_us_per_query": bench_us,
            "postgres_us_per_query": pg_us, "error_samples": ph.errors.samples(),
        }),
        ok,
        human,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{VOCABULARY, message_text};

    #[test]
    fn vocabulary_is_distinct_and_queries_have_the_right_shape() {
        let mut rng = Rng(1);
        let v = vocabulary(&mut rng);
        assert_eq!(v.len(), VOCABULARY);
        assert_eq!(v.iter().collect::<HashSet<_>>().len(), VOCABULARY);
        assert!(v.iter().any(|w| !w.is_ascii()), "some words are accented");
        let z = Zipf::new(v.len(), 1.0);
        // Rank 0 is drawn far more often than rank 1000.
        let draws: Vec<usize> = (0..20_000).map(|_| z.sample(&mut rng)).collect();
        let top = draws.iter().filter(|r| **r == 0).count();
        let mid = draws.iter().filter(|r| **r == 1000).count();
        assert!(top > 50 * mid.max(1), "top {top}, rank 1000 {mid}");
        for _ in 0..100 {
            let (k, q) = query(&mut rng, &v, &z, 0.5);
            let parsed = rtm::domain::search::SearchQuery::parse(&q).unwrap();
            match k {
                Kind::TwoWords => {
                    assert!(q.ends_with(' '));
                    assert!(parsed.terms.iter().all(|t| !t.prefix));
                }
                Kind::Prefix => assert!(parsed.terms.len() == 1 && parsed.terms[0].prefix),
            }
        }
        let m = message_text(&mut rng, &v, &z);
        assert!(m.split(' ').count() >= 3);
    }
}
