//! `search`: full-text search latency over a large history (issue 13). The database
//! is filled BEFORE the server starts, straight through the server's own Store API
//! (`rtm::store::connect` + `append` in batches of thousands, the call the pipeline
//! makes, so the rows, the search text and the full-text index are exactly what sends
//! leave behind): a million sends through WebSockets would take far longer than the
//! measurement on a shared 2-core machine. The text is synthetic but shaped like chat:
//! a vocabulary with a Zipf word distribution (a few very common words, a long tail,
//! some accented words), messages of 3 to 21 words, rooms of uneven activity, each with
//! a few authors, over six months of timestamps. The searching users are members of a
//! subset of the rooms.
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
use rtm::{
    domain::{MessageKind, Retention},
    store::{DynStore, NewMessage, NewRoom, NewUser},
};
use serde_json::json;
use tokio::time::Instant;

use crate::{
    Common,
    cluster::Postgres,
    http,
    load::CpuMeter,
    report::{self, Latency, Outcome},
    stats, sys,
    target::{Endpoint, Target},
};

/// Password of the searching accounts (the server only checks its length).
const PASSWORD: &str = "bench-password-not-secret";
/// Words in the vocabulary.
const VOCABULARY: usize = 30_000;
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

/// A small deterministic generator (splitmix64): reproducible data without a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Ranks drawn with probability ∝ 1 / (rank + 1)^s.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut total = 0.0;
        let cumulative = (0..n)
            .map(|r| {
                total += 1.0 / ((r + 1) as f64).powf(s);
                total
            })
            .collect();
        Zipf { cumulative }
    }
    fn sample(&self, rng: &mut Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let u = rng.unit() * total;
        self.cumulative.partition_point(|c| *c < u).min(self.cumulative.len().saturating_sub(1))
    }
}

/// Real words first (the most frequent ranks, some accented), then made-up words from
/// syllables, a few with accents, all distinct.
fn vocabulary(rng: &mut Rng) -> Vec<String> {
    const COMMON: &str = "the to and a i you it is of in that for on we this be have with are not \
        just can do so but if at me my was will all what get now up out ok yes no about like \
        from there one think need should time know some when then also here how today work build \
        deploy release test fix bug issue review merge branch server client database query index \
        meeting lunch tomorrow week monday friday morning call team project plan update change \
        café réunion équipe problème déploiement données sécurité résumé crème naïve über größe \
        mañana señal déjà vu été être fenêtre hôtel garçon façade coöperate piñata smörgåsbord \
        log error warning latency memory disk network cluster node backup restore migration \
        schema table search message room user account login password token session cookie";
    let mut seen = HashSet::new();
    let mut words: Vec<String> = Vec::with_capacity(VOCABULARY);
    for w in COMMON.split_whitespace() {
        if seen.insert(w.to_string()) {
            words.push(w.to_string());
        }
    }
    const ONSETS: [&str; 20] =
        ["b", "c", "d", "f", "g", "l", "m", "n", "p", "r", "s", "t", "v", "br", "ch", "st", "tr", "pl", "gr", "k"];
    const VOWELS: [&str; 12] = ["a", "e", "i", "o", "u", "ou", "ai", "ea", "io", "é", "è", "ü"];
    const CODAS: [&str; 8] = ["", "", "", "n", "r", "s", "l", "t"];
    while words.len() < VOCABULARY {
        let syllables = 2 + rng.below(3);
        let mut w = String::new();
        for _ in 0..syllables {
            w.push_str(ONSETS[rng.below(ONSETS.len())]);
            // Accented vowels in about one made-up word in six.
            let v = if rng.below(16) == 0 { VOWELS[9 + rng.below(3)] } else { VOWELS[rng.below(9)] };
            w.push_str(v);
            w.push_str(CODAS[rng.below(CODAS.len())]);
        }
        if seen.insert(w.clone()) {
            words.push(w);
        }
    }
    words
}

/// One chat message: 3 to 21 words, sometimes capitalised, sometimes with a question
/// mark or a comma, so the text is not just lower-case tokens.
fn message_text(rng: &mut Rng, vocab: &[String], zipf: &Zipf) -> String {
    let n = 3 + rng.below(10) + rng.below(10);
    let mut s = String::with_capacity(n * 7);
    for i in 0..n {
        if i > 0 {
            s.push_str(if rng.below(12) == 0 { ", " } else { " " });
        }
        let w = &vocab[zipf.sample(rng)];
        if i == 0 && rng.below(3) == 0 {
            let mut c = w.chars();
            if let Some(f) = c.next() {
                s.extend(f.to_uppercase());
                s.push_str(c.as_str());
            }
        } else {
            s.push_str(w);
        }
    }
    s.push(if rng.below(5) == 0 { '?' } else { '.' });
    s
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
    let t0 = Instant::now();
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let hash = rtm::auth::Hasher::new(1).hash(PASSWORD).await.context("cannot hash the bench password")?;
    let tag = sys::random_tag();
    let user = |name: String| NewUser {
        email: format!("{name}@bench.example"),
        email_lc: format!("{name}@bench.example"),
        username: name.clone(),
        username_lc: name,
        first_name: "Bench".into(),
        last_name: "User".into(),
        password_hash: hash.clone(),
        now,
    };
    let mut authors = Vec::with_capacity(a.authors);
    for i in 0..a.authors {
        authors.push(store.create_user(user(format!("s{tag}-a{i}"))).await?.id);
    }
    let mut searchers = Vec::with_capacity(a.searchers);
    let mut searcher_ids = Vec::with_capacity(a.searchers);
    for i in 0..a.searchers {
        let name = format!("s{tag}-q{i}");
        searcher_ids.push(store.create_user(user(name.clone())).await?.id);
        searchers.push(name);
    }
    // Rooms, each with a few of the authors as members (they write its messages).
    const AUTHORS_PER_ROOM: usize = 8;
    let pb = report::bar(a.rooms as u64, "creating rooms", quiet);
    let mut rooms = Vec::with_capacity(a.rooms);
    let mut room_authors: Vec<Vec<i64>> = Vec::with_capacity(a.rooms);
    for r in 0..a.rooms {
        let name = format!("search-{tag}-{r}");
        let room = store
            .create_room(NewRoom {
                name: name.clone(),
                name_lc: name,
                topic: String::new(),
                is_private: false,
                owner_id: authors[r % authors.len()],
                retention: Retention { keep_messages: None, keep_days: None, ephemeral: false },
                now,
            })
            .await?;
        let members: Vec<i64> =
            (0..AUTHORS_PER_ROOM.min(authors.len())).map(|k| authors[(r * 7 + k * 13) % authors.len()]).collect();
        for m in &members {
            store.add_member(room.id, *m, now).await?;
        }
        rooms.push(room.id);
        room_authors.push(members);
        pb.inc(1);
    }
    pb.finish_and_clear();
    // Each searcher is in a random subset of the rooms.
    let mut member_of: Vec<HashSet<usize>> = Vec::with_capacity(a.searchers);
    for s in &searcher_ids {
        let mut set = HashSet::new();
        while set.len() < a.member_rooms.min(a.rooms) {
            set.insert(rng.below(a.rooms));
        }
        for r in &set {
            store.add_member(rooms[*r], *s, now).await?;
        }
        member_of.push(set);
    }
    // Messages over the last 180 days, in time order; rooms chosen with a Zipf law
    // (busy rooms and quiet ones), an author among the room's members.
    let word_zipf = Zipf::new(vocab.len(), 1.0);
    let room_zipf = Zipf::new(a.rooms, 0.8);
    let span_ms = 180 * 86_400_000i64;
    let step = (span_ms / a.messages.max(1) as i64).max(1);
    let mut per_room = vec![0u64; a.rooms];
    let pb = report::bar(a.messages as u64, "storing messages", quiet);
    let mut done = 0usize;
    let mut batches = 0usize;
    while done < a.messages {
        let n = a.batch.min(a.messages - done);
        let mut batch = Vec::with_capacity(n);
        for k in 0..n {
            let r = room_zipf.sample(rng);
            per_room[r] += 1;
            let who = room_authors[r][rng.below(room_authors[r].len())];
            let text = message_text(rng, vocab, &word_zipf);
            let at = now - span_ms + (done + k) as i64 * step;
            batch.push(NewMessage::plain(rooms[r], who, MessageKind::Text, text, at));
        }
        let stored = store.append(&batch).await?;
        if stored.len() != n {
            bail!("append stored {} of {n} messages", stored.len());
        }
        done += n;
        batches += 1;
        // The server checkpoints SQLite's WAL off the write path every few seconds; so
        // do we, or the WAL would hold the whole fill.
        if batches.is_multiple_of(20) {
            store.maintain().await?;
        }
        pb.set_position(done as u64);
    }
    store.maintain().await?;
    pb.finish_and_clear();
    let visible = member_of.iter().map(|set| set.iter().map(|r| per_room[*r]).sum()).collect();
    Ok(Filled { secs: t0.elapsed().as_secs_f64(), searchers, visible })
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
    // Declared after `dir`, so dropped (stopped) before the directory is removed.
    let pg = if a.postgres { Some(Postgres::start(&dir.0, 50)?) } else { None };
    let url = match (&pg, &c.database) {
        (Some(pg), _) => pg.url.clone(),
        (None, Some(u)) => u.clone(),
        (None, None) => format!("sqlite:{}", dir.0.join("rtm.db").display()),
    };
    let backend = if url.starts_with("sqlite") {
        "sqlite"
    } else if url.starts_with("postgres") {
        "postgres"
    } else {
        "mysql"
    };

    let mut rng = Rng(a.seed);
    let vocab = vocabulary(&mut rng);
    let store = rtm::store::connect(&url, 4).await.context("cannot open the database")?;
    let filled = fill(&store, &a, &vocab, &mut rng, c.quiet).await?;
    drop(store);
    if backend == "postgres" {
        // Statistics, as autovacuum gathers them after a bulk load; without them the
        // planner guesses the selectivity of the full-text condition.
        use sqlx::Connection;
        let mut conn = sqlx::postgres::PgConnection::connect(&url).await.context("cannot connect for ANALYZE")?;
        sqlx::query("ANALYZE").execute(&mut conn).await.context("ANALYZE failed")?;
        let _ = conn.close().await;
    }
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
