//! PostgreSQL's append of plain messages in ONE statement, one round trip, instead of
//! seven (BEGIN, the room lock, the retry lookup, the seq reservation, the INSERT, the
//! trim, COMMIT). A trip costs more than PostgreSQL's own work on a small batch:
//! BEGIN to COMMIT took p50 2.0 ms where the server worked 0.76 ms (BENCHMARKS.md,
//! round 13), and every trip wakes the waiting task.
//!
//! The statement does what the general path does, in its order: it locks the batch's
//! rooms in id order (two nodes' batches never wait on each other in a cycle),
//! reserves their seqs, inserts the rows and trims "keep the last N" and the DMs'
//! held messages. It runs outside a transaction, so it commits alone or not at all.
//! Being one statement, all its parts read one snapshot, taken before it waited for
//! the lock; so it bets on two things, each checked inside it:
//! - No message of the batch is a retry of one stored before. It does not look: the
//!   unique index on (room, author, client id) refuses a retry's INSERT, also one
//!   that another node committed a moment ago.
//! - The trim reaches no row that the snapshot cannot see: the batch's own rows, and
//!   those another node committed to its rooms while it waited for the lock. The
//!   rows it deletes are all at or below the room's new last seq minus what the room
//!   keeps (minus the DM cap), which must not be above the last seq the snapshot saw.
//!   Otherwise such rows would outlive the room's retention. A room that keeps 1,000
//!   messages can take a batch of many while other nodes write to it; one that keeps
//!   five cannot take six at once.
//!
//! A room that is gone or a lost bet gets a NULL seq, which the column refuses: the
//! whole statement fails, nothing is written, and the caller takes the general path,
//! which locks, looks and then writes. Retries within the batch are known without
//! the database ([`Plan`]). Actions, mentions and attachments touch other tables:
//! batches with any of them take the general path.

use std::{collections::HashMap, sync::LazyLock};

use serde::Serialize;

use super::{Backend, Plan, Q, Reserved, SqlStore, answers, hand_out};
use crate::{
    domain::{RoomId, Seq},
    store::{Appended, NewMessage, StoreError, StoreResult},
};

/// Messages in one statement at most (as the general path's chunks).
const MAX_ROWS: usize = 500;

/// One message to store, as the statement reads it from its JSON array.
#[derive(Serialize)]
struct Row<'a> {
    room_id: RoomId,
    k: i64,
    author_id: i64,
    kind: &'a str,
    body: &'a str,
    client_id: Option<&'a str>,
    created_at: i64,
    target_seq: Option<Seq>,
    reply_to: Option<Seq>,
    search_text: Option<String>,
}

/// [`STATEMENT`] up to its DM trims. `$1`: the DM cap (`--max-held-dms`, 0: none);
/// `$2`: the rows ([`Row`]). `l` locks the rooms in id order, all of them before `r`
/// reserves their seqs (`r` reads `l` whole first, as an array); `s` is the rooms as
/// the snapshot saw them; `ok.fine` is the bet on the trim; `cut`, the DM trims and
/// `cut_held` are the general path's trims (`trim_queries`), each an index range (one
/// DELETE with an OR walked every row of a DM and asked for its read markers per row:
/// +25 % of PostgreSQL's CPU a DM); a row two trims pick is deleted once. The rooms
/// are found by `= ANY(ARRAY(…))`, which PostgreSQL answers from the primary key
/// whatever it guesses of the JSON's length; with `IN (SELECT …)` the prepared plan
/// scanned all rooms. Answers the reservation's rows, as `reserve_query`.
const HEAD: &str = "WITH m AS (SELECT * FROM jsonb_to_recordset($2::jsonb)
           AS m(room_id int8, k int8, author_id int8, kind text, body text, client_id text,
                created_at int8, target_seq int8, reply_to int8, search_text text)),
     v AS (SELECT room_id AS id, count(*) AS n FROM m GROUP BY room_id),
     l AS (SELECT id FROM rooms WHERE id = ANY(ARRAY(SELECT id FROM v)) ORDER BY id FOR UPDATE),
     s AS (SELECT id, last_seq FROM rooms WHERE id = ANY(ARRAY(SELECT id FROM v))),
     r AS (UPDATE rooms SET last_seq = rooms.last_seq + v.n FROM v
            WHERE rooms.id = v.id AND rooms.id = ANY(ARRAY(SELECT id FROM l))
            RETURNING rooms.id, rooms.last_seq, rooms.keep_messages, rooms.kind, v.n),
     ok AS (SELECT r.id, r.last_seq, r.keep_messages, r.kind, r.n,
                   ((r.keep_messages IS NULL OR r.last_seq - r.keep_messages <= s.last_seq)
                    AND (r.kind <> 'dm' OR $1::int8 = 0 OR r.last_seq - $1::int8 <= s.last_seq)) AS fine
              FROM r JOIN s ON s.id = r.id),
     ins AS (INSERT INTO messages (room_id, seq, author_id, kind, body, client_id, created_at, target_seq, reply_to, search_text)
             SELECT m.room_id, CASE WHEN ok.fine THEN ok.last_seq - ok.n + m.k END, m.author_id, m.kind,
                    m.body, m.client_id, m.created_at, m.target_seq, m.reply_to, m.search_text
               FROM m LEFT JOIN ok ON ok.id = m.room_id),
     cut AS (DELETE FROM messages x USING ok
              WHERE ok.fine AND ok.kind <> 'dm' AND x.room_id = ok.id
                AND x.seq > GREATEST(ok.last_seq - ok.n - ok.keep_messages, 0)
                AND x.seq <= ok.last_seq - ok.keep_messages),
";
/// [`STATEMENT`] after its DM trims: the held-DM cap, and the answer.
const TAIL: &str = "     cut_held AS (DELETE FROM messages x USING ok
              WHERE ok.fine AND ok.kind = 'dm' AND $1::int8 > 0 AND x.room_id = ok.id
                AND x.seq <= ok.last_seq - $1::int8)
     SELECT id, last_seq, keep_messages, kind FROM ok";
/// The statement: [`HEAD`], one DM trim per author (`cut_dm` the lower member id,
/// `cut_dm2` the higher), [`TAIL`]. Built once, from the general path's per-author
/// bound ([`super::dm_author`], [`super::read_by_other`]): each trim is a range of
/// `messages_author_seq` holding only rows it deletes. By seq alone, the trim walked
/// every message held for a recipient who had not read them, on every send (26 ms of
/// PostgreSQL's CPU at ~4,000 held, BENCHMARKS.md round 15). Scalar sub-selects, not a
/// join with `memberships`: joined, the planner hashed the DM's whole history when it
/// misjudged the tables' sizes.
static STATEMENT: LazyLock<String> = LazyLock::new(|| {
    let cuts: String = [("cut_dm", "MIN"), ("cut_dm2", "MAX")]
        .iter()
        .map(|(name, pick)| {
            let author = super::dm_author(pick, "ok.id");
            format!(
                "     {name} AS (DELETE FROM messages x USING ok
              WHERE ok.fine AND ok.kind = 'dm' AND x.room_id = ok.id AND x.author_id = {author}
                AND x.seq <= LEAST(ok.last_seq - ok.keep_messages, {})),\n",
                super::read_by_other("ok.id", &author)
            )
        })
        .collect();
    [HEAD, &cuts, TAIL].concat()
});

impl SqlStore {
    /// Whether [`SqlStore::append_plain_pg`] can take `batch`.
    pub(super) fn plain_pg_batch(&self, batch: &[NewMessage]) -> bool {
        self.backend == Backend::Postgres && super::plain_batch(batch, MAX_ROWS)
    }

    /// Appends a batch that [`SqlStore::plain_pg_batch`] accepted. `Ok(None)`: a bet
    /// was lost (see the module's text); nothing was written, take the general path.
    pub(crate) async fn append_plain_pg(&self, batch: &[NewMessage]) -> StoreResult<Option<Vec<Appended>>> {
        let mut out: Vec<Option<Appended>> = vec![None; batch.len()];
        let Plan { fresh, dup_of, per_room } = Plan::of(batch, &HashMap::new(), &mut out);
        let rows = match self.one_statement(batch, &fresh)?.fetch_all(&self.writer).await {
            Ok(rows) => rows,
            Err(e) if super::lost_bet(&e) => {
                self.counted(super::AppendPath::Retaken);
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let mut touched: HashMap<RoomId, Reserved> = HashMap::new();
        for row in &rows {
            let (room, r) = Reserved::from_row(&per_room, row)?;
            if let Some(r) = r {
                touched.insert(room, r);
            }
        }
        if touched.len() != per_room.len() {
            // Cannot be: a room without its row fails the statement.
            return Err(StoreError::Backend("the append statement left out a room".into()));
        }
        hand_out(batch, &fresh, &dup_of, &mut touched, &mut out);
        self.counted(super::AppendPath::Short);
        answers(out).map(Some)
    }

    /// The statement and its two binds: the DM cap, and the rows to store as one JSON
    /// array, each with its place among the batch's rows of its room (`k`: 1, 2, …),
    /// from which its seq follows once the room's new last seq is known. The text never
    /// changes, so each connection prepares it once, whatever the batch's shape.
    fn one_statement(&self, batch: &[NewMessage], fresh: &[usize]) -> StoreResult<Q> {
        let mut seen: HashMap<RoomId, Seq> = HashMap::new();
        let rows: Vec<Row<'_>> = fresh
            .iter()
            .map(|i| {
                let m = &batch[*i];
                let k = seen.entry(m.room_id).or_insert(0);
                *k += 1;
                Row {
                    room_id: m.room_id,
                    k: *k,
                    author_id: m.author_id,
                    kind: m.kind.as_str(),
                    body: &m.body,
                    client_id: m.client_id.as_deref(),
                    created_at: m.created_at,
                    target_seq: m.target,
                    reply_to: m.reply_to,
                    search_text: super::search_text(m),
                }
            })
            .collect();
        let json = serde_json::to_string(&rows).map_err(|e| StoreError::Backend(format!("append rows: {e}")))?;
        Ok(self.q(STATEMENT.as_str()).bind(self.held_dm_cap.load(std::sync::atomic::Ordering::Relaxed)).bind(json))
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{AnyConnection, Connection, Executor, Row};

    use crate::{domain::MessageKind, store::NewMessage};

    /// A store on a fresh database of the test PostgreSQL (`RTM_TEST_PG_URL`, which
    /// scripts/test starts), named as the integration tests name theirs (`rtm_t_PID_…`)
    /// so that their clean-up drops it once this process is gone.
    async fn fresh_store() -> super::SqlStore {
        sqlx::any::install_default_drivers();
        let admin = std::env::var("RTM_TEST_PG_URL")
            .expect("RTM_TEST_PG_URL is not set: run the suite with scripts/test, which starts PostgreSQL");
        let mut conn = AnyConnection::connect(&admin).await.expect("connect to the test PostgreSQL");
        let mut rnd = [0u8; 6];
        getrandom::fill(&mut rnd).expect("random");
        let name = format!("rtm_t_{}_{}", std::process::id(), hex::encode(rnd));
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.expect("create database");
        let mut url = url::Url::parse(&admin).expect("RTM_TEST_PG_URL is a URL");
        url.set_path(&name);
        crate::store::postgres::open(url.as_str(), 2).await.expect("store opens")
    }

    /// The statement's DM trims read only rows they delete. Ann has written 3,000
    /// messages that Bob has not read, all past the DM's "keep the last 2" and all
    /// held; she has read everything, so Bob's trim reaches up to seq 2,999 (and finds
    /// none of his). Her next send deletes nothing. The plan (run, then rolled back,
    /// after `ANALYZE`, as autovacuum leaves a grown table) must not have walked the
    /// held ones: by seq alone, with the read bound asked per row, it read and filtered
    /// out 2,999 on every send (26 ms at ~4,000 held).
    #[tokio::test]
    async fn dm_trim_walks_no_held_message() {
        let store = fresh_store().await;
        store
            .writer
            .execute(
                "INSERT INTO users (id, email, email_lc, username, username_lc, first_name, last_name, password_hash, created_at)
                   VALUES (1, 'a@x', 'a@x', 'ann', 'ann', 'A', 'A', 'x', 0), (2, 'b@x', 'b@x', 'bob', 'bob', 'B', 'B', 'x', 0);
                 INSERT INTO rooms (id, kind, dm_key, keep_messages, last_seq, created_at) VALUES (1, 'dm', '1:2', 2, 3000, 0);
                 INSERT INTO memberships (room_id, user_id, joined_at, last_read_seq) VALUES (1, 1, 0, 3000), (1, 2, 0, 0);
                 INSERT INTO messages (room_id, seq, author_id, kind, body, created_at)
                   SELECT 1, g, 1, 'text', 'held', 0 FROM generate_series(1, 3000) g;
                 ANALYZE",
            )
            .await
            .unwrap();
        let batch = [NewMessage::plain(1, 1, MessageKind::Text, "one more".into(), 0)];
        let explain = store.one_statement(&batch, &[0]).unwrap().explained("EXPLAIN (ANALYZE, COSTS OFF)");
        let mut tx = store.writer.begin().await.unwrap();
        let lines: Vec<String> =
            explain.fetch_all(&mut *tx).await.unwrap().iter().map(|r| r.try_get::<String, _>(0).unwrap()).collect();
        tx.rollback().await.unwrap();
        // Each scan of `messages` under the DM trims, with the properties printed under
        // it (up to its first sub-plan or child).
        let indent = |l: &str| l.len() - l.trim_start().len();
        let mut scans = Vec::new();
        let mut in_dm_trim = false;
        for (i, l) in lines.iter().enumerate() {
            if l.trim_start().starts_with("CTE ") {
                in_dm_trim = l.trim_start().starts_with("CTE cut_dm");
            } else if in_dm_trim && l.contains("Scan") && l.contains(" on messages ") {
                let props: Vec<&String> = lines[i + 1..]
                    .iter()
                    .take_while(|p| {
                        indent(p) > indent(l) && !p.contains("->") && !p.trim_start().starts_with("SubPlan")
                    })
                    .collect();
                scans.push((l, props));
            }
        }
        assert_eq!(scans.len(), 2, "one scan per author: {lines:#?}");
        for (scan, props) in scans {
            assert!(scan.contains("messages_author_seq") && scan.contains("rows=0 "), "{scan}: {lines:#?}");
            assert!(!props.iter().any(|p| p.contains("Rows Removed")), "walked held rows: {lines:#?}");
        }
        assert_eq!(
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM messages").fetch_one(&store.pool).await.unwrap(),
            3000,
            "rolled back"
        );
    }
}
