//! A stored history, written before a server starts: the messages a long-lived server
//! has kept. Both `search` (over what it searches) and `--history N` of every other
//! workload (fan-out, DMs, persistence on a database that already holds messages: costs
//! that grow with what is stored do not show on a fresh database) fill it here,
//! straight through the server's own Store API (`rtm::store::connect` + `append` in
//! batches of thousands, the call the pipeline makes, so the rows, the search text and
//! the full-text index are exactly what sends leave behind): sending them through
//! WebSockets would take far longer than the measurement on a shared 2-core machine.
//!
//! The text is synthetic but shaped like chat: a vocabulary with a Zipf word
//! distribution (a few very common words, a long tail, some accented words), messages
//! of 3 to 21 words, rooms of uneven activity, each with a few authors, over six months
//! of timestamps.

use std::collections::HashSet;

use anyhow::{Context, Result, bail};
use rtm::{
    domain::{MessageKind, Retention},
    store::{DynStore, NewMessage, NewRoom, NewUser},
};
use tokio::time::Instant;

use crate::{report, sys};

/// Words in the vocabulary.
pub const VOCABULARY: usize = 30_000;
/// Password of the accounts made here (the server only checks its length).
pub const PASSWORD: &str = "bench-password-not-secret";
/// Authors of each room (they write its messages).
const AUTHORS_PER_ROOM: usize = 8;

/// A small deterministic generator (splitmix64): reproducible data without a crate.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Ranks drawn with probability ∝ 1 / (rank + 1)^s.
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Zipf {
        let mut total = 0.0;
        let cumulative = (0..n)
            .map(|r| {
                total += 1.0 / ((r + 1) as f64).powf(s);
                total
            })
            .collect();
        Zipf { cumulative }
    }
    pub fn sample(&self, rng: &mut Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let u = rng.unit() * total;
        self.cumulative.partition_point(|c| *c < u).min(self.cumulative.len().saturating_sub(1))
    }
}

/// Real words first (the most frequent ranks, some accented), then made-up words from
/// syllables, a few with accents, all distinct.
pub fn vocabulary(rng: &mut Rng) -> Vec<String> {
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
pub fn message_text(rng: &mut Rng, vocab: &[String], zipf: &Zipf) -> String {
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

/// What to store.
pub struct Spec {
    pub messages: usize,
    pub rooms: usize,
    pub authors: usize,
    /// Messages per `append` call.
    pub batch: usize,
}

/// What was stored.
pub struct Stored {
    pub secs: f64,
    /// Room ids, in the order the Zipf law ranks them (room 0 the busiest).
    pub rooms: Vec<i64>,
    /// Messages stored in each room.
    pub per_room: Vec<u64>,
    /// The password hash every account here shares (for more accounts).
    pub hash: String,
    /// The tag in every name made here (unique to this fill).
    pub tag: String,
    /// Milliseconds since the epoch when the fill started ("now" of its timestamps).
    pub now: i64,
}

/// A bench account (`{name}@bench.example`, password [`PASSWORD`]).
pub fn account(name: String, hash: &str, now: i64) -> NewUser {
    NewUser {
        email: format!("{name}@bench.example"),
        email_lc: format!("{name}@bench.example"),
        username: name.clone(),
        username_lc: name,
        first_name: "Bench".into(),
        last_name: "User".into(),
        password_hash: hash.to_string(),
        now,
    }
}

/// Stores `spec.authors` accounts, `spec.rooms` public rooms (keep everything), each
/// with a few of the authors as members, and `spec.messages` messages over the last
/// 180 days in time order, rooms chosen with a Zipf law (busy rooms and quiet ones).
pub async fn store(store: &DynStore, spec: &Spec, vocab: &[String], rng: &mut Rng, quiet: bool) -> Result<Stored> {
    if spec.rooms == 0 || spec.authors == 0 || spec.batch == 0 {
        bail!("a history needs at least one room, one author and a batch of at least one");
    }
    let t0 = Instant::now();
    // What a server's first start on a fresh database does: nothing is stored by an
    // older version, so the search words' one-time re-index has nothing to do and is
    // marked done. Without this the server would walk the whole history once in the
    // background at its start, in the middle of the measurement.
    rtm::chat::reindex_search_words(store).await.context("cannot settle the search re-index")?;
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let hash = rtm::auth::Hasher::new(1).hash(PASSWORD).await.context("cannot hash the bench password")?;
    let tag = sys::random_tag();
    let pb = report::bar(spec.authors as u64, "creating authors", quiet);
    let mut authors = Vec::with_capacity(spec.authors);
    for i in 0..spec.authors {
        authors.push(store.create_user(account(format!("s{tag}-a{i}"), &hash, now)).await?.id);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let pb = report::bar(spec.rooms as u64, "creating rooms", quiet);
    let mut rooms = Vec::with_capacity(spec.rooms);
    let mut room_authors: Vec<Vec<i64>> = Vec::with_capacity(spec.rooms);
    for r in 0..spec.rooms {
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
    let word_zipf = Zipf::new(vocab.len(), 1.0);
    let room_zipf = Zipf::new(spec.rooms, 0.8);
    let span_ms = 180 * 86_400_000i64;
    let step = (span_ms / spec.messages.max(1) as i64).max(1);
    let mut per_room = vec![0u64; spec.rooms];
    let pb = report::bar(spec.messages as u64, "storing messages", quiet);
    let mut done = 0usize;
    let mut batches = 0usize;
    while done < spec.messages {
        let n = spec.batch.min(spec.messages - done);
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
    Ok(Stored { secs: t0.elapsed().as_secs_f64(), rooms, per_room, hash, tag, now })
}

/// Gathers PostgreSQL's statistics after a bulk load, as autovacuum would a little
/// later; without them the planner guesses (e.g. the full-text condition's
/// selectivity). Nothing to do on the other databases.
pub async fn analyze(url: &str) -> Result<()> {
    if !(url.starts_with("postgres:") || url.starts_with("postgresql:")) {
        return Ok(());
    }
    use sqlx::Connection;
    let mut conn = sqlx::postgres::PgConnection::connect(url).await.context("cannot connect for ANALYZE")?;
    sqlx::query("ANALYZE").execute(&mut conn).await.context("ANALYZE failed")?;
    let _ = conn.close().await;
    Ok(())
}

/// `--history N`: stores N messages (over `rooms` rooms by `authors` accounts) in the
/// database at `url` before a server starts on it.
pub async fn fill(url: &str, spec: &Spec, quiet: bool) -> Result<()> {
    let mut rng = Rng(13);
    let vocab = vocabulary(&mut rng);
    let db = rtm::store::connect(url, 4).await.context("cannot open the database to store the history")?;
    let stored = store(&db, spec, &vocab, &mut rng, quiet).await?;
    drop(db);
    analyze(url).await?;
    if !quiet {
        eprintln!(
            "history: stored {} messages in {} rooms by {} accounts in {:.1} s",
            spec.messages, spec.rooms, spec.authors, stored.secs
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fill stores exactly what it reports, room by room, in a real SQLite file,
    /// leaves the database as a server of this version would (no re-index pending),
    /// and a second fill into the same database adds to it (distinct names).
    #[tokio::test]
    async fn stores_what_it_reports() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("rtm.db").display());
        let db = rtm::store::connect(&url, 2).await.unwrap();
        let mut rng = Rng(5);
        let vocab = vocabulary(&mut rng);
        let spec = Spec { messages: 2_345, rooms: 7, authors: 3, batch: 300 };
        let s = store(&db, &spec, &vocab, &mut rng, true).await.unwrap();
        assert_eq!(s.per_room.iter().sum::<u64>(), 2_345);
        assert!(s.per_room[0] > s.per_room[6], "room 0 is the busiest: {:?}", s.per_room);
        for (room, n) in s.rooms.iter().zip(&s.per_room) {
            assert_eq!(db.count_messages(*room).await.unwrap(), *n as i64);
        }
        assert_eq!(db.counts().await.unwrap(), (3, 7));
        // A server starting on it has no re-index of the search words to walk through
        // (the settings key of `chat::search`), as on a database it created itself.
        assert_eq!(db.get_setting("search_words_reindexed").await.unwrap().as_deref(), Some("1"));
        let again = store(&db, &Spec { messages: 10, rooms: 1, authors: 1, batch: 4 }, &vocab, &mut rng, true).await;
        assert_eq!(again.unwrap().per_room, vec![10]);
        assert_eq!(db.counts().await.unwrap(), (4, 8));
    }
}
