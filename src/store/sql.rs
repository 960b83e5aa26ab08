//! The [`Store`] implementation shared by SQLite, PostgreSQL and MySQL/MariaDB, written
//! once against sqlx's `Any` driver. Queries use `$n` placeholders (SQLite and
//! PostgreSQL accept them; [`Q`] rewrites them as `?` for MySQL), `RETURNING` and
//! `ON CONFLICT` where the database has them (the few MySQL variants are beside them,
//! see `mysql.rs`), and keep flags and times as BIGINT because `Any` reads SQLite
//! integers as i64 and has no portable boolean.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::{AnyPool, AssertSqlSafe, Row, any::AnyRow};

use super::*;
use crate::domain::{MessageKind, RoomKind};

// Admin console queries (issue 15), a child module so it shares this file's helpers.
#[path = "admin_sql.rs"]
mod admin_sql;
// SQLite's two-call append of plain messages (issue 16).
#[path = "sqlite_append.rs"]
mod sqlite_append;
#[cfg(test)]
pub(crate) use sqlite_append::Writing;
// PostgreSQL's one-statement append of plain messages (issue 16).
#[path = "postgres_append.rs"]
mod postgres_append;

/// Which database is behind the pool; only a few statements differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    Mysql,
}

pub struct SqlStore {
    /// Reads.
    pub(crate) pool: AnyPool,
    /// Writes. On SQLite a pool of ONE connection: SQLite has a single writer anyway,
    /// and a connection that is the only writer keeps its page cache valid between
    /// transactions (another connection's commit makes it re-read every page it
    /// touches), and queues writers in the pool instead of in busy-timeout retries.
    /// On PostgreSQL the same pool as `pool`.
    pub(crate) writer: AnyPool,
    pub(crate) backend: Backend,
    /// Most unread events one DM keeps for its recipient beyond its retention
    /// (`--max-held-dms`; 0: no bound). Set once at start.
    pub(crate) held_dm_cap: std::sync::atomic::AtomicI64,
    /// SQLite: what the last append of each room left in its row, so the next can be
    /// one call to the writer's thread (`sqlite_append.rs`). Empty elsewhere.
    pub(crate) known: parking_lot::Mutex<HashMap<RoomId, sqlite_append::Known>>,
    /// The shortest word the full-text index keeps: MariaDB/MySQL's
    /// `innodb_ft_min_token_size` (read at start); 1 elsewhere.
    pub(crate) min_word_chars: usize,
    /// Appends by the backend's short path, and short attempts undone and taken again
    /// by the general path (see [`SqlStore::append_counts`]).
    pub(crate) appends: [std::sync::atomic::AtomicU64; 2],
}

/// Which way an append of plain messages went.
#[derive(Debug, Clone, Copy)]
pub(super) enum AppendPath {
    /// SQLite's one or two calls (`sqlite_append.rs`), PostgreSQL's one statement
    /// (`postgres_append.rs`).
    Short,
    /// The short path's bet was lost (a retried send; on PostgreSQL a room that keeps
    /// few messages, written by another node at that moment): undone, then the
    /// general path.
    Retaken,
}

impl SqlStore {
    /// How many appends took the short path, and how many were retaken by the general
    /// path after trying it, since this store opened. A high share retaken means many
    /// retried sends, or rooms keeping few messages that several nodes write at once.
    pub fn append_counts(&self) -> (u64, u64) {
        let get = |k: usize| self.appends[k].load(std::sync::atomic::Ordering::Relaxed);
        (get(0), get(1))
    }

    pub(super) fn counted(&self, path: AppendPath) {
        let (k, global) = match path {
            AppendPath::Short => (0, &crate::metrics::APPENDS_SHORT),
            AppendPath::Retaken => (1, &crate::metrics::APPENDS_RETAKEN),
        };
        self.appends[k].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        global.inc();
    }
}

const USER_COLS: &str = "u.id, u.email, u.username, u.first_name, u.last_name, u.is_admin, u.disabled, u.created_at";
const ROOM_COLS: &str = "r.id, r.kind, r.name, r.topic, r.is_private, r.owner_id, r.keep_messages, r.keep_days, r.ephemeral, r.last_seq, r.created_at, r.archived, r.read_only";
const MSG_COLS: &str =
    "m.room_id, m.seq, m.author_id, COALESCE(u.username, '') AS username, m.kind, m.body, m.client_id, m.created_at,
     m.target_seq, m.reply_to, m.edited_at, m.deleted,
     t.author_id AS r_author, COALESCE(tu.username, '') AS r_username, t.body AS r_body, t.deleted AS r_deleted";
/// The tables [`MSG_COLS`] reads: the event, its author, and the message it replies to.
const MSG_FROM: &str = "messages m LEFT JOIN users u ON u.id = m.author_id
     LEFT JOIN messages t ON m.reply_to IS NOT NULL AND t.room_id = m.room_id AND t.seq = m.reply_to
     LEFT JOIN users tu ON tu.id = t.author_id";

/// The keep-days sweep: messages of rooms with a keep-days policy that are older than
/// it; DMs keep what a member has not read yet. The first condition is implied by the
/// rest: it lets the `messages_created` index give only the messages older than the
/// shortest keep-days, where the statement without it walked every message on every
/// sweep (131 ms of the one writer's time at 318,400 messages, with no such policy in
/// any room).
pub(crate) const PRUNE_EXPIRED: &str = "DELETE FROM messages
  WHERE messages.created_at < $1 - (SELECT MIN(keep_days) FROM rooms WHERE keep_days IS NOT NULL) * 86400000
    AND EXISTS (
      SELECT 1 FROM rooms r WHERE r.id = messages.room_id AND r.keep_days IS NOT NULL
        AND messages.created_at < $1 - r.keep_days * 86400000
        AND (r.kind = 'room' OR messages.seq <= (SELECT COALESCE(MIN(ms.last_read_seq), 0) FROM memberships ms WHERE ms.room_id = r.id AND ms.user_id <> messages.author_id)))";

/// The disabled accounts, asked by every node's upkeep: `> 0` (the flag is 0 or 1),
/// not `<> 0`, which no index serves (`users_disabled`, migration "upkeep indexes").
pub(crate) const DISABLED_IDS: &str = "SELECT id FROM users WHERE disabled > 0";
/// Sessions past their absolute expiry, from `sessions_expires`.
pub(crate) const EXPIRED_SESSIONS: &str = "SELECT user_id, token_hash FROM sessions WHERE expires_at <= $1 LIMIT $2";

// Moderation queries (issue 15), a child module so it shares this file's helpers.
#[path = "moderation_sql.rs"]
mod moderation_sql;

/// A pooled connection, held for all the queries of one read.
type Conn = sqlx::pool::PoolConnection<sqlx::Any>;

/// What a message's text is indexed as: live texts only.
fn search_text(m: &NewMessage) -> Option<String> {
    (m.kind == MessageKind::Text).then(|| crate::domain::search::index_text(&m.body))
}

fn user_from(row: &AnyRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        username: row.try_get("username")?,
        first_name: row.try_get("first_name")?,
        last_name: row.try_get("last_name")?,
        is_admin: row.try_get::<i64, _>("is_admin")? != 0,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created_at: row.try_get("created_at")?,
    })
}

fn room_from(row: &AnyRow) -> Result<Room, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    Ok(Room {
        id: row.try_get("id")?,
        kind: RoomKind::parse(&kind).unwrap_or(RoomKind::Room),
        name: row.try_get("name")?,
        topic: row.try_get("topic")?,
        is_private: row.try_get::<i64, _>("is_private")? != 0,
        read_only: row.try_get::<i64, _>("read_only")? != 0,
        owner_id: row.try_get("owner_id")?,
        retention: Retention {
            keep_messages: row.try_get("keep_messages")?,
            keep_days: row.try_get("keep_days")?,
            ephemeral: row.try_get::<i64, _>("ephemeral")? != 0,
        },
        last_seq: row.try_get("last_seq")?,
        created_at: row.try_get("created_at")?,
        archived: row.try_get::<i64, _>("archived")? != 0,
    })
}

fn message_from(row: &AnyRow) -> Result<StoredMessage, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    let reply_to = match row.try_get::<Option<i64>, _>("reply_to")? {
        Some(seq) => {
            // The original as it is now: gone (trimmed) or deleted reads as "missing".
            let alive = row.try_get::<Option<i64>, _>("r_deleted")? == Some(0);
            let original = match (alive, row.try_get::<Option<i64>, _>("r_author")?) {
                (true, Some(author)) => {
                    let body: Option<String> = row.try_get("r_body")?;
                    Some((
                        author,
                        row.try_get("r_username")?,
                        crate::domain::actions::excerpt(&body.unwrap_or_default()),
                    ))
                }
                _ => None,
            };
            Some(ReplyRow { seq, original })
        }
        None => None,
    };
    Ok(StoredMessage {
        target: row.try_get("target_seq")?,
        reply_to,
        edited_at: row.try_get("edited_at")?,
        deleted: row.try_get::<i64, _>("deleted")? != 0,
        reactions: Vec::new(),
        mentions: Vec::new(),
        attachments: Vec::new(),
        room_id: row.try_get("room_id")?,
        seq: row.try_get("seq")?,
        author_id: row.try_get("author_id")?,
        author_username: row.try_get("username")?,
        kind: MessageKind::parse(&kind).unwrap_or(MessageKind::Text),
        body: row.try_get("body")?,
        client_id: row.try_get("client_id")?,
        created_at: row.try_get("created_at")?,
    })
}

fn b(v: bool) -> i64 {
    v as i64
}

/// A LIKE pattern matching `q` anywhere, with LIKE's wildcards escaped.
/// A person's folded full name (`domain::names::person_fold`), or for a row written
/// before the column existed (filled in at start-up) the database's own lower case.
pub(super) const NAME_FOLD: &str = "COALESCE(u.name_fold, lower(u.first_name || ' ' || u.last_name))";
/// A room's folded topic, as [`NAME_FOLD`].
pub(super) const TOPIC_FOLD: &str = "COALESCE(r.topic_fold, lower(r.topic))";

fn like_pattern(q: &str) -> String {
    let mut p = String::from("%");
    for c in crate::domain::names::search_fold(q).chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// A value bound to a statement. Every bind of the store is an integer or a string.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(Some(v))
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(Some(v.to_string()))
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Arg::Text(v)
    }
}

/// A statement written with `$n` placeholders and its binds, made into a sqlx query
/// for the backend when it runs. SQLite and PostgreSQL take the text as it is; MySQL
/// has only positional `?`, so there each `$n` becomes `?` and its value is bound
/// once per use (see [`super::mysql::positional`]).
pub(crate) struct Q {
    backend: Backend,
    sql: String,
    args: Vec<Arg>,
}

impl Q {
    pub(crate) fn bind(mut self, v: impl Into<Arg>) -> Self {
        self.args.push(v.into());
        self
    }

    /// This statement, then `next`, as one string run in one call. Only for SQLite
    /// with anonymous `?` placeholders, which take the binds in order across
    /// statements (a `$n` there is absolute, so the second statement's `$1` would
    /// take the first one's value).
    pub(crate) fn then(mut self, next: Q) -> Self {
        debug_assert!(self.backend == Backend::Sqlite && !next.sql.contains('$'));
        self.sql.push_str(";\n");
        self.sql.push_str(&next.sql);
        self.args.extend(next.args);
        self
    }

    /// This statement behind `prefix` (`EXPLAIN …`), with the same binds: tests read
    /// the plans of statements built here.
    #[cfg(test)]
    pub(crate) fn explained(self, prefix: &str) -> Self {
        Q { sql: format!("{prefix} {}", self.sql), ..self }
    }

    fn build(self) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
        let (sql, args) = match self.backend {
            Backend::Mysql => {
                let (sql, order) = super::mysql::positional(&self.sql);
                let args = if order.is_empty() {
                    self.args
                } else {
                    order.iter().filter_map(|n| self.args.get(n.wrapping_sub(1)).cloned()).collect()
                };
                (sql, args)
            }
            Backend::Sqlite | Backend::Postgres => (self.sql, self.args),
        };
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for a in args {
            q = match a {
                Arg::Int(Some(v)) => q.bind(v),
                Arg::Int(None) => q.bind(None::<i64>),
                Arg::Text(Some(v)) => q.bind(v),
                Arg::Text(None) => q.bind(None::<String>),
            };
        }
        q
    }

    pub(crate) async fn execute<'c, E>(self, e: E) -> Result<sqlx::any::AnyQueryResult, sqlx::Error>
    where
        E: sqlx::Executor<'c, Database = sqlx::Any>,
    {
        self.build().execute(e).await
    }

    pub(crate) async fn fetch_one<'c, E>(self, e: E) -> Result<AnyRow, sqlx::Error>
    where
        E: sqlx::Executor<'c, Database = sqlx::Any>,
    {
        self.build().fetch_one(e).await
    }

    pub(crate) async fn fetch_optional<'c, E>(self, e: E) -> Result<Option<AnyRow>, sqlx::Error>
    where
        E: sqlx::Executor<'c, Database = sqlx::Any>,
    {
        self.build().fetch_optional(e).await
    }

    pub(crate) async fn fetch_all<'c, E>(self, e: E) -> Result<Vec<AnyRow>, sqlx::Error>
    where
        E: sqlx::Executor<'c, Database = sqlx::Any>,
    {
        self.build().fetch_all(e).await
    }
}

/// Seqs reserved for one room in one append batch.
pub(super) struct Reserved {
    /// The next seq to hand out.
    next: Seq,
    /// The room's last seq after the batch.
    last: Seq,
    /// How many seqs the batch reserved.
    added: i64,
    keep: Option<i64>,
    is_dm: bool,
}

impl Reserved {
    /// The reservation of `room`, whose last seq is now `last`, if the batch asked
    /// for seqs there.
    fn of(per_room: &[(RoomId, i64)], room: RoomId, last: Seq, keep: Option<i64>, kind: &str) -> Option<Self> {
        let (_, n) = per_room.iter().find(|(r, _)| *r == room)?;
        Some(Reserved { next: last - n + 1, last, added: *n, keep, is_dm: kind == "dm" })
    }

    /// A row of the reservation's `RETURNING id, last_seq, keep_messages, kind`.
    pub(super) fn from_row(per_room: &[(RoomId, i64)], row: &AnyRow) -> Result<(RoomId, Option<Self>), sqlx::Error> {
        let room: RoomId = row.try_get("id")?;
        let kind: String = row.try_get("kind")?;
        Ok((room, Self::of(per_room, room, row.try_get("last_seq")?, row.try_get("keep_messages")?, &kind)))
    }
}

/// Which messages of an append batch get new seqs, once the retried sends already
/// stored (`stored`) are known: those are answered `Duplicate` in `out` at once.
pub(super) struct Plan {
    /// The messages to store, in batch order.
    pub fresh: Vec<usize>,
    /// A retry within the batch, and the message it repeats.
    pub dup_of: Vec<(usize, usize)>,
    /// How many seqs each room needs, rooms in first-seen order.
    pub per_room: Vec<(RoomId, i64)>,
}

impl Plan {
    pub(super) fn of(
        batch: &[NewMessage],
        stored: &HashMap<(RoomId, UserId, &str), Seq>,
        out: &mut [Option<Appended>],
    ) -> Self {
        let mut fresh: Vec<usize> = Vec::with_capacity(batch.len());
        let mut first_in_batch: HashMap<(RoomId, UserId, &str), usize> = HashMap::new();
        let mut dup_of: Vec<(usize, usize)> = Vec::new();
        for (i, m) in batch.iter().enumerate() {
            if let Some(cid) = m.client_id.as_deref() {
                let key = (m.room_id, m.author_id, cid);
                if let Some(seq) = stored.get(&key) {
                    out[i] = Some(Appended::Duplicate(*seq));
                    continue;
                }
                if let Some(first) = first_in_batch.get(&key) {
                    dup_of.push((i, *first));
                    continue;
                }
                first_in_batch.insert(key, i);
            }
            fresh.push(i);
        }
        let mut per_room: Vec<(RoomId, i64)> = Vec::new();
        for i in &fresh {
            match per_room.iter_mut().find(|(r, _)| *r == batch[*i].room_id) {
                Some((_, n)) => *n += 1,
                None => per_room.push((batch[*i].room_id, 1)),
            }
        }
        Plan { fresh, dup_of, per_room }
    }
}

/// Hands out the reserved seqs in batch order: the (message, seq) rows to insert.
/// Retries within the batch get their first copy's seq as `Duplicate`.
pub(super) fn hand_out(
    batch: &[NewMessage],
    fresh: &[usize],
    dup_of: &[(usize, usize)],
    touched: &mut HashMap<RoomId, Reserved>,
    out: &mut [Option<Appended>],
) -> Vec<(usize, Seq)> {
    let mut seqs: Vec<(usize, Seq)> = Vec::with_capacity(fresh.len());
    for i in fresh {
        if let Some(t) = touched.get_mut(&batch[*i].room_id) {
            seqs.push((*i, t.next));
            out[*i] = Some(Appended::New(t.next));
            t.next += 1;
        }
    }
    for (i, first) in dup_of {
        out[*i] = out[*first].map(|a| Appended::Duplicate(a.seq()));
    }
    seqs
}

/// Binds the 10 columns of each (message index, seq) row, in `insert_query`'s order.
pub(super) fn bind_rows(mut q: Q, batch: &[NewMessage], rows: &[(usize, Seq)]) -> Q {
    for (i, seq) in rows {
        let m = &batch[*i];
        q = q
            .bind(m.room_id)
            .bind(*seq)
            .bind(m.author_id)
            .bind(m.kind.as_str())
            .bind(m.body.clone())
            .bind(m.client_id.clone())
            .bind(m.created_at)
            .bind(m.target)
            .bind(m.reply_to)
            .bind(search_text(m));
    }
    q
}

/// Whether `batch` (1 to `max` messages) holds only plain messages, which a short path
/// can take: no action, mention or attachment, which touch other tables.
pub(super) fn plain_batch(batch: &[NewMessage], max: usize) -> bool {
    !batch.is_empty()
        && batch.len() <= max
        && batch.iter().all(|m| !m.kind.is_action() && m.mentions.is_empty() && m.attachments.is_empty())
}

/// The member of DM `room` whose messages one DM trim takes: `pick` is MIN or MAX, a
/// DM's two members by id (a DM cannot be left). `room` is SQL: a placeholder or a
/// column.
pub(super) fn dm_author(pick: &str, room: &str) -> String {
    format!("(SELECT {pick}(user_id) FROM memberships WHERE room_id = {room})")
}

/// How far the member of `room` other than `author` has read (0: nothing), as SQL:
/// `author`'s messages up to there may go. On PostgreSQL and MariaDB, with
/// [`dm_author`], each DM trim is a range of `messages_author_seq` holding only rows it
/// deletes, never the held ones; SQLite's trims ask it for each row of their step
/// (`author` is the row's `messages.author_id`).
pub(super) fn read_by_other(room: &str, author: &str) -> String {
    format!(
        "(SELECT COALESCE(MIN(ms.last_read_seq), 0) FROM memberships ms WHERE ms.room_id = {room} AND ms.user_id <> {author})"
    )
}

/// What a read makes deletable in a DM on PostgreSQL and MariaDB (SQLite:
/// `SqlStore::read_trim`): the other member's messages up to the reader's marker and
/// the retention's cut, one range of `messages_author_seq` holding only rows it
/// deletes. Whole, not a step: a read that races a send (which reads the markers in
/// its own snapshot) trims what it sees, and the DM's next send or read the rest.
fn dm_read_trim(room: &str, reader: &str, marker: &str) -> String {
    format!(
        "DELETE FROM messages WHERE room_id = {room}
           AND author_id = (SELECT MIN(user_id) FROM memberships WHERE room_id = {room} AND user_id <> {reader})
           AND seq <= {marker}
           AND seq <= (SELECT last_seq - keep_messages FROM rooms WHERE id = {room})"
    )
}

/// Whether a short path's append failed because a bet it checks inside the database
/// was lost (a NULL seq, a retry refused by the unique index, a room that is gone):
/// nothing was written and the general path takes the batch.
pub(super) fn lost_bet(e: &sqlx::Error) -> bool {
    use sqlx::error::ErrorKind;
    matches!(e, sqlx::Error::Database(db) if matches!(
        db.kind(),
        ErrorKind::NotNullViolation | ErrorKind::UniqueViolation | ErrorKind::ForeignKeyViolation
    ))
}

/// Every message's answer, once each has one.
pub(super) fn answers(out: Vec<Option<Appended>>) -> StoreResult<Vec<Appended>> {
    out.into_iter().map(|a| a.ok_or_else(|| StoreError::Backend("append lost track of a message".into()))).collect()
}

/// The statements of an append, built apart so that SQLite can send several of them
/// to its connection's thread as one string (`sqlite_append.rs`). Every placeholder is
/// `self.ph(n)`, which on SQLite is an anonymous `?`: binds are consumed in order, also
/// across the statements of one string.
impl SqlStore {
    /// Finds which messages of `chunk` (indexes into `batch`) were stored already:
    /// rows of (room_id, author_id, client_id, seq).
    pub(super) fn dedup_query(&self, batch: &[NewMessage], chunk: &[usize]) -> Q {
        let n = self.padded(chunk.len());
        let tuples: Vec<String> = (0..n)
            .map(|k| format!("({}, {}, {})", self.ph(3 * k + 1), self.ph(3 * k + 2), self.ph(3 * k + 3)))
            .collect();
        // PostgreSQL and MySQL answer a row-value IN (over VALUES; MySQL takes a
        // plain list) from the unique (room_id, author_id, client_id) index.
        // SQLite does not: its index is partial (client_id IS NOT NULL), which an
        // IN does not prove, so one tuple walked the room's whole primary key and
        // two scanned the table (~0.3 ms of the writer per commit at 1,000 kept
        // messages a room: BENCHMARKS.md, issue 16). A join on VALUES, VALUES
        // first, is one index search per tuple.
        let sql = match self.backend {
            Backend::Sqlite => format!(
                "SELECT m.room_id AS room_id, m.author_id AS author_id, m.client_id AS client_id, m.seq AS seq
                   FROM (VALUES {}) AS v CROSS JOIN messages AS m
                   ON m.room_id = v.column1 AND m.author_id = v.column2 AND m.client_id = v.column3",
                tuples.join(", ")
            ),
            Backend::Postgres | Backend::Mysql => {
                let values = if self.backend == Backend::Mysql { "" } else { "VALUES " };
                format!(
                    "SELECT room_id, author_id, client_id, seq FROM messages WHERE (room_id, author_id, client_id) IN ({values}{})",
                    tuples.join(", ")
                )
            }
        };
        let mut q = self.q(sql);
        for k in 0..n {
            let m = &batch[chunk[k.min(chunk.len() - 1)]];
            q = q.bind(m.room_id).bind(m.author_id).bind(m.client_id.clone());
        }
        q
    }

    /// ONE statement reserving `n` seqs in each room of `per_room` (not empty); but on
    /// MySQL it returns the rooms' `id, last_seq, keep_messages, kind` after it.
    pub(super) fn reserve_query(&self, per_room: &[(RoomId, i64)]) -> Q {
        let len = self.padded(per_room.len());
        let padded = |k: usize| per_room[k.min(per_room.len() - 1)];
        let mut sql = String::from("UPDATE rooms SET last_seq = last_seq + CASE id");
        for k in 0..len {
            sql.push_str(&format!(" WHEN {} THEN {}", self.ph(2 * k + 1), self.ph(2 * k + 2)));
        }
        let ids: Vec<String> = (0..len).map(|k| self.ph(2 * len + k + 1)).collect();
        sql.push_str(&format!(" END WHERE id IN ({})", ids.join(", ")));
        if self.backend != Backend::Mysql {
            sql.push_str(" RETURNING id, last_seq, keep_messages, kind");
        }
        let mut q = self.q(sql);
        for k in 0..len {
            let (room, n) = padded(k);
            q = q.bind(room).bind(n);
        }
        for k in 0..len {
            q = q.bind(padded(k).0);
        }
        q
    }

    /// One multi-row INSERT of `rows` (message index, seq).
    pub(super) fn insert_query(&self, batch: &[NewMessage], rows: &[(usize, Seq)]) -> Q {
        let mut sql = String::from(
            "INSERT INTO messages (room_id, seq, author_id, kind, body, client_id, created_at, target_seq, reply_to, search_text) VALUES ",
        );
        for k in 0..rows.len() {
            if k > 0 {
                sql.push(',');
            }
            let cols: Vec<String> = (1..=10).map(|c| self.ph(10 * k + c)).collect();
            sql.push('(');
            sql.push_str(&cols.join(", "));
            sql.push(')');
        }
        bind_rows(self.q(sql), batch, rows)
    }

    /// The trims [`SqlStore::trim_queries`] makes for one DM whose last seq is now
    /// `last` after `added` new messages, keeping `keep`: for tests of their plans.
    #[cfg(test)]
    pub(crate) fn dm_trims(&self, room: RoomId, last: Seq, added: i64, keep: i64) -> Vec<Q> {
        let r = Reserved { next: last - added + 1, last, added, keep: Some(keep), is_dm: true };
        self.trim_queries(&HashMap::from([(room, r)]))
    }

    /// "Keep the last N" after a batch: every room's range in ONE DELETE; a DM's
    /// apart (held unread messages: on SQLite one DELETE of the batch's step, elsewhere
    /// one per author).
    pub(super) fn trim_queries(&self, touched: &HashMap<RoomId, Reserved>) -> Vec<Q> {
        let mut out = Vec::new();
        let mut ranges: Vec<(RoomId, Seq, Seq)> = Vec::new();
        let held_cap = self.held_dm_cap.load(std::sync::atomic::Ordering::Relaxed);
        for (room, t) in touched {
            if t.is_dm && held_cap > 0 && t.last > held_cap {
                // Held unread messages are bounded too: past the cap, the oldest go
                // even unread (the recipient's resume then says `gap`). Per DM, so
                // a flood from one sender only ever pushes out that sender's own
                // conversation, never anyone else's messages.
                out.push(
                    self.q(format!("DELETE FROM messages WHERE room_id = {} AND seq <= {}", self.ph(1), self.ph(2)))
                        .bind(*room)
                        .bind(t.last - held_cap),
                );
            }
            let keep_last = Retention { keep_messages: t.keep, keep_days: None, ephemeral: false };
            let Some(cut) = keep_last.count_cutoff(t.last) else {
                continue;
            };
            // Everything up to the previous batch's cut is gone already (and a policy
            // change prunes at once): start the range there. On PostgreSQL the deleted
            // rows' index entries stay until vacuum, and a scan from seq 0 walked all of
            // them on every batch (1.7 ms per DELETE).
            let before = keep_last.count_cutoff(t.last - t.added).unwrap_or(0);
            if t.is_dm && self.backend == Backend::Sqlite {
                // A DM is never pruned past what its recipient has read: a message held
                // for someone offline stays until they have it (the author's own marker
                // does not count). SQLite trims a DM's messages as they become
                // deletable: here those the cut now passes, up to what the other member
                // has read; in `mark_read` those the reader has now read, up to the
                // cut. So this range is the batch's step of the cut, whatever is held
                // below it (one writer: a send and a read never interleave).
                let sql = format!(
                    "DELETE FROM messages WHERE room_id = {} AND seq > {} AND seq <= {} AND seq <= {}",
                    self.ph(1),
                    self.ph(2),
                    self.ph(3),
                    read_by_other(&self.ph(4), "messages.author_id")
                );
                out.push(self.q(sql).bind(*room).bind(before).bind(cut).bind(*room));
            } else if t.is_dm {
                // Here trims are whole, not steps (with several nodes a send and a read
                // could each miss what the other made deletable): every send, and every
                // read (`dm_read_trim`), deletes all that is deletable. One DELETE per
                // author (a DM's two members are its members' lowest and highest id),
                // each bounded by what the other member has read: an index range
                // (`messages_author_seq`) of exactly the rows it deletes. One DELETE for
                // both, by seq alone, walked every held message on every send (26 ms of
                // PostgreSQL's CPU at 4,000 held; BENCHMARKS.md round 15).
                for pick in ["MIN", "MAX"] {
                    let sql = format!(
                        "DELETE FROM messages WHERE room_id = {} AND author_id = {} AND seq <= {} AND seq <= {}",
                        self.ph(1),
                        dm_author(pick, &self.ph(2)),
                        self.ph(3),
                        read_by_other(&self.ph(4), &dm_author(pick, &self.ph(5)))
                    );
                    out.push(self.q(sql).bind(*room).bind(*room).bind(cut).bind(*room).bind(*room));
                }
            } else {
                ranges.push((*room, before, cut));
            }
        }
        if !ranges.is_empty() {
            let len = self.padded(ranges.len());
            let terms: Vec<String> = (0..len)
                .map(|k| {
                    format!(
                        "(room_id = {} AND seq > {} AND seq <= {})",
                        self.ph(3 * k + 1),
                        self.ph(3 * k + 2),
                        self.ph(3 * k + 3)
                    )
                })
                .collect();
            let mut q = self.q(format!("DELETE FROM messages WHERE {}", terms.join(" OR ")));
            for k in 0..len {
                let (room, before, cut) = ranges[k.min(ranges.len() - 1)];
                q = q.bind(room).bind(before).bind(cut);
            }
            out.push(q);
        }
        out
    }
}

impl SqlStore {
    /// Copies committed pages from the WAL into the database file, in two steps. The
    /// bulk from a READ connection, while appends go on. Then the rest from the writer:
    /// nothing appends meanwhile, so this copy (small, one fsync) completes, and the
    /// next write starts the log again from its beginning. Under sustained writes a
    /// checkpoint from a reader alone never catches up, and the log would grow without
    /// end; the file is reused, never truncated (truncating and re-growing a large
    /// file stalled appends by ~35 ms here). Returns the log's frames and how many
    /// are in the database file after the second step.
    pub(crate) async fn checkpoint(&self) -> StoreResult<(i64, i64)> {
        self.q("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&self.pool).await?;
        let row = self.q("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&self.writer).await?;
        Ok((row.try_get(1)?, row.try_get(2)?))
    }

    /// A transaction that will write. On SQLite it takes the write lock at BEGIN
    /// (IMMEDIATE): a deferred transaction that reads first and then writes fails at
    /// once with "database is locked" if another writer committed in between, and the
    /// busy timeout does not help that case.
    /// Takes the account lock until `tx` ends: sign-ups and admin-flag changes take
    /// turns (SQLite: its single writer already serializes them).
    pub(super) async fn lock_accounts(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    ) -> Result<(), sqlx::Error> {
        match self.backend {
            Backend::Postgres => {
                self.q("SELECT pg_advisory_xact_lock(7270001)").execute(&mut **tx).await?;
            }
            Backend::Mysql => {
                self.q("SELECT id FROM signup_lock WHERE id = 1 FOR UPDATE").fetch_all(&mut **tx).await?;
            }
            Backend::Sqlite => {}
        }
        Ok(())
    }

    pub(super) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        let _wait = crate::metrics::PoolWait::start();
        match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres | Backend::Mysql => self.writer.begin().await,
        }
    }

    /// The n-th (1-based) bind placeholder of a generated statement. SQLite gets plain
    /// `?`: sqlx resolves each `$n` there by scanning parameter names, which turns a
    /// thousand-parameter batch insert quadratic.
    /// Fills in the reactions of a page's messages and the usernames its texts
    /// mention: two queries per page, whatever its length.
    /// Runs on the connection that read the page: a page must not wait for a second
    /// connection while holding its rows (200 resumes at once held ~4 MB each while
    /// queueing for the pool: 600 MB RSS, BENCHMARKS.md issue 16).
    async fn decorate(&self, conn: &mut Conn, room: RoomId, rows: &mut [StoredMessage]) -> StoreResult<()> {
        self.decorate_files(conn, room, rows).await?;
        let texts = || rows.iter().filter(|m| m.kind == MessageKind::Text && !m.deleted);
        if let (Some(lo), Some(hi)) = (texts().map(|m| m.seq).min(), texts().map(|m| m.seq).max()) {
            let found = self
                .q("SELECT seq, emoji, user_id FROM reactions WHERE room_id = $1 AND seq >= $2 AND seq <= $3
                    ORDER BY seq, given_seq")
                .bind(room)
                .bind(lo)
                .bind(hi)
                .fetch_all(&mut **conn)
                .await?;
            let mut by_seq: HashMap<Seq, Vec<(String, Vec<UserId>)>> = HashMap::new();
            for r in &found {
                let (seq, emoji, user): (Seq, String, UserId) =
                    (r.try_get("seq")?, r.try_get("emoji")?, r.try_get("user_id")?);
                let list = by_seq.entry(seq).or_default();
                match list.iter_mut().find(|(e, _)| *e == emoji) {
                    Some((_, users)) => users.push(user),
                    None => list.push((emoji, vec![user])),
                }
            }
            for m in rows.iter_mut() {
                if let Some(r) = by_seq.remove(&m.seq) {
                    m.reactions = r;
                }
            }
        }
        let wanted = |m: &StoredMessage| matches!(m.kind, MessageKind::Text | MessageKind::Edit) && !m.deleted;
        let mut ids: Vec<UserId> =
            rows.iter().filter(|m| wanted(m)).flat_map(|m| crate::domain::actions::mentioned_ids(&m.body)).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Ok(());
        }
        let mut names: HashMap<UserId, String> = HashMap::new();
        for chunk in ids.chunks(500) {
            let n = self.padded(chunk.len());
            let ph: Vec<String> = (1..=n).map(|k| self.ph(k)).collect();
            let mut q = self.q(format!("SELECT id, username FROM users WHERE id IN ({})", ph.join(", ")));
            for k in 0..n {
                q = q.bind(chunk[k.min(chunk.len() - 1)]);
            }
            for r in q.fetch_all(&mut **conn).await? {
                names.insert(r.try_get("id")?, r.try_get("username")?);
            }
        }
        for m in rows.iter_mut().filter(|m| wanted(m)) {
            m.mentions = crate::domain::actions::mentioned_ids(&m.body)
                .into_iter()
                .filter_map(|id| names.get(&id).map(|n| (id, n.clone())))
                .collect();
        }
        Ok(())
    }

    /// Applies an action's effect on its target, inside the append's transaction.
    /// `seq` is the action's own seq.
    async fn apply_action(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        m: &NewMessage,
        seq: Seq,
    ) -> Result<(), sqlx::Error> {
        let Some(target) = m.target else {
            return Ok(());
        };
        let room = m.room_id;
        match m.kind {
            MessageKind::Edit => {
                // The target may have been deleted after the edit was accepted: then the
                // edit changes nothing and keeps no copy of its text.
                let alive = self
                    .q("SELECT seq FROM messages WHERE room_id = $1 AND seq = $2 AND kind = 'text' AND deleted = 0")
                    .bind(room)
                    .bind(target)
                    .fetch_optional(&mut **tx)
                    .await?
                    .is_some();
                if alive {
                    self.q("UPDATE messages SET body = $1, edited_at = $2, search_text = $3 WHERE room_id = $4 AND seq = $5")
                        .bind(m.body.clone())
                        .bind(m.created_at)
                        .bind(crate::domain::search::index_text(&m.body))
                        .bind(room)
                        .bind(target)
                        .execute(&mut **tx)
                        .await?;
                    self.q("DELETE FROM mentions WHERE room_id = $1 AND seq = $2")
                        .bind(room)
                        .bind(target)
                        .execute(&mut **tx)
                        .await?;
                    self.insert_mentions(tx, room, target, &m.mentions).await?;
                } else {
                    self.q("UPDATE messages SET body = '' WHERE room_id = $1 AND seq = $2")
                        .bind(room)
                        .bind(seq)
                        .execute(&mut **tx)
                        .await?;
                }
            }
            MessageKind::Delete => {
                // The text is removed from the store, not hidden: the message, every
                // edit's copy of it, its reactions and its mentions.
                self.q("UPDATE messages SET body = '', deleted = 1, edited_at = NULL, search_text = NULL WHERE room_id = $1 AND seq = $2 AND kind = 'text'")
                    .bind(room)
                    .bind(target)
                    .execute(&mut **tx)
                    .await?;
                self.q("UPDATE messages SET body = '' WHERE room_id = $1 AND target_seq = $2 AND kind = 'edit'")
                    .bind(room)
                    .bind(target)
                    .execute(&mut **tx)
                    .await?;
                // Its files too (the sweeper then removes blobs no row names).
                for table in ["reactions", "mentions", "files"] {
                    self.q(format!("DELETE FROM {table} WHERE room_id = $1 AND seq = $2"))
                        .bind(room)
                        .bind(target)
                        .execute(&mut **tx)
                        .await?;
                }
            }
            MessageKind::React => {
                let (insert, tail) = self.insert_ignore();
                self.q(format!(
                    "{insert} INTO reactions (room_id, seq, user_id, emoji, given_seq)
                     SELECT $1, $2, $3, $4, $5 FROM messages WHERE room_id = $1 AND seq = $2 AND kind = 'text' AND deleted = 0{tail}"
                ))
                .bind(room)
                .bind(target)
                .bind(m.author_id)
                .bind(m.body.clone())
                .bind(seq)
                .execute(&mut **tx)
                .await?;
            }
            MessageKind::Unreact => {
                self.q("DELETE FROM reactions WHERE room_id = $1 AND seq = $2 AND user_id = $3 AND emoji = $4")
                    .bind(room)
                    .bind(target)
                    .bind(m.author_id)
                    .bind(m.body.clone())
                    .execute(&mut **tx)
                    .await?;
            }
            MessageKind::Text | MessageKind::Joined | MessageKind::Left | MessageKind::Moderation => {}
        }
        Ok(())
    }

    async fn insert_mentions(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        room: RoomId,
        seq: Seq,
        users: &[UserId],
    ) -> Result<(), sqlx::Error> {
        let (insert, tail) = self.insert_ignore();
        for user in users {
            self.q(format!("{insert} INTO mentions (room_id, seq, user_id) VALUES ($1, $2, $3){tail}"))
                .bind(room)
                .bind(seq)
                .bind(*user)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    fn ph(&self, n: usize) -> String {
        match self.backend {
            Backend::Sqlite => "?".to_string(),
            Backend::Postgres | Backend::Mysql => format!("${n}"),
        }
    }

    /// Runs `q`, an INSERT of one row into `table` (keyed by `id`), and reads `cols` of
    /// the new row: with `RETURNING` where the database has it, else (MySQL) by the
    /// id the INSERT generated, on the same connection.
    async fn insert_returning(
        &self,
        conn: &mut sqlx::AnyConnection,
        mut q: Q,
        table: &str,
        cols: &str,
    ) -> StoreResult<AnyRow> {
        if self.backend == Backend::Mysql {
            let id = q
                .execute(&mut *conn)
                .await?
                .last_insert_id()
                .ok_or_else(|| StoreError::Backend(format!("no id for the new row of {table}")))?;
            Ok(self.q(format!("SELECT {cols} FROM {table} WHERE id = $1")).bind(id).fetch_one(&mut *conn).await?)
        } else {
            q.sql.push_str(" RETURNING ");
            q.sql.push_str(cols);
            Ok(q.fetch_one(&mut *conn).await?)
        }
    }

    /// `INSERT` that skips a row breaking a unique key, and what ends the statement:
    /// `ON CONFLICT DO NOTHING` on SQLite and PostgreSQL, `INSERT IGNORE` on MySQL
    /// (used only for rows of ids, where the errors IGNORE also turns into warnings
    /// cannot happen).
    fn insert_ignore(&self) -> (&'static str, &'static str) {
        match self.backend {
            Backend::Mysql => ("INSERT IGNORE", ""),
            Backend::Sqlite | Backend::Postgres => ("INSERT", " ON CONFLICT DO NOTHING"),
        }
    }

    /// The settings table's key column (`key` is a reserved word in MySQL).
    fn key_col(&self) -> &'static str {
        match self.backend {
            Backend::Mysql => "`key`",
            Backend::Sqlite | Backend::Postgres => "key",
        }
    }

    /// How many entries a generated list of `n` gets. On MySQL, a power of two (the
    /// caller repeats its last entry, which changes nothing in an `IN` list, a
    /// `CASE`, or an `OR` of ranges): sqlx prepares every distinct text once per
    /// connection and keeps 100 of them, and with a text per batch size the evicted
    /// statement's `COM_STMT_CLOSE` (a packet the server does not answer) held the
    /// next statement back in the kernel (Nagle's algorithm against the server's
    /// delayed ACK, 40 ms): `persist` went from 14.5k to 35k messages/s over TCP.
    /// On SQLite too: the one-call append (`sqlite_append.rs`) joins several generated
    /// lists into one text, and with every size of each a text of its own, statements
    /// were prepared again at most commits (7 % of the server at 1,000 × 10).
    pub(super) fn padded(&self, n: usize) -> usize {
        match self.backend {
            Backend::Mysql | Backend::Sqlite => n.next_power_of_two(),
            Backend::Postgres => n,
        }
    }

    /// A statement to run on this backend (see [`Q`]).
    pub(crate) fn q(&self, sql: impl Into<String>) -> Q {
        Q { backend: self.backend, sql: sql.into(), args: Vec::new() }
    }

    /// Fills in the search folds (migration 0009) of the accounts and rooms written
    /// before them: once, at start-up; a node of an older version that writes rows
    /// meanwhile leaves them to the queries' fallback (`NAME_FOLD`) until the next.
    pub(super) async fn fill_search_folds(&self) -> StoreResult<()> {
        let users =
            self.q("SELECT id, first_name, last_name FROM users WHERE name_fold IS NULL").fetch_all(&self.pool).await?;
        let rooms = self
            .q("SELECT id, topic FROM rooms WHERE topic IS NOT NULL AND topic_fold IS NULL")
            .fetch_all(&self.pool)
            .await?;
        if users.is_empty() && rooms.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for r in &users {
            let (id, first, last): (i64, String, String) =
                (r.try_get("id")?, r.try_get("first_name")?, r.try_get("last_name")?);
            self.q("UPDATE users SET name_fold = $1 WHERE id = $2")
                .bind(crate::domain::names::person_fold(&first, &last))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        for r in &rooms {
            let (id, topic): (i64, String) = (r.try_get("id")?, r.try_get("topic")?);
            self.q("UPDATE rooms SET topic_fold = $1 WHERE id = $2")
                .bind(crate::domain::names::search_fold(&topic))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        tracing::info!(users = users.len(), rooms = rooms.len(), "search folds filled in");
        Ok(())
    }

    /// The one column `sql` selects from the row of (`room` as $1, `user` as $2), if
    /// there is such a row.
    pub(super) async fn room_user_value<T>(&self, sql: &str, room: RoomId, user: UserId) -> StoreResult<Option<T>>
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        let row = self.q(sql).bind(room).bind(user).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn admin_list_users(
        &self,
        q: Option<&str>,
        sort: UserSort,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<AdminUser>, i64)> {
        self.admin_list_users(q, sort, offset, limit).await
    }
    async fn set_admin(&self, id: UserId, admin: bool) -> StoreResult<bool> {
        self.admin_set_admin(id, admin).await
    }
    async fn disable_unless_last_admin(&self, id: UserId) -> StoreResult<bool> {
        self.admin_disable_guarded(id).await
    }
    async fn touch_last_seen(&self, id: UserId, now: i64) -> StoreResult<()> {
        self.admin_touch_last_seen(id, now).await
    }
    async fn create_password_reset(
        &self,
        h: &str,
        u: UserId,
        by: Option<UserId>,
        now: i64,
        exp: i64,
    ) -> StoreResult<()> {
        self.admin_create_reset(h, u, by, now, exp).await
    }
    async fn claim_password_reset(&self, hash: &str, now: i64) -> StoreResult<Option<UserId>> {
        self.admin_claim_reset(hash, now).await
    }
    async fn password_reset_usable(&self, hash: &str, now: i64) -> StoreResult<bool> {
        self.admin_reset_usable(hash, now).await
    }
    async fn admin_list_rooms(&self, q: Option<&str>, offset: i64, limit: i64) -> StoreResult<(Vec<AdminRoom>, i64)> {
        self.admin_list_rooms(q, offset, limit).await
    }
    async fn set_archived(&self, room: RoomId, archived: bool) -> StoreResult<bool> {
        self.admin_set_archived(room, archived).await
    }
    async fn delete_room(&self, room: RoomId) -> StoreResult<Option<Vec<UserId>>> {
        self.admin_delete_room(room).await
    }
    async fn append_audit(&self, entry: NewAudit) -> StoreResult<()> {
        self.admin_append_audit(entry).await
    }
    async fn audit(&self, before: Option<i64>, limit: i64) -> StoreResult<Vec<AuditRow>> {
        self.admin_audit(before, limit).await
    }
    async fn prune_audit(&self, older_than: i64) -> StoreResult<u64> {
        self.admin_prune_audit(older_than).await
    }
    async fn audit_max_id(&self) -> StoreResult<i64> {
        self.admin_audit_max_id().await
    }
    async fn cli_audit_after(&self, after: i64, limit: i64) -> StoreResult<Vec<AuditRow>> {
        self.admin_cli_audit_after(after, limit).await
    }
    async fn counts(&self) -> StoreResult<(i64, i64)> {
        self.admin_counts().await
    }
    async fn database_bytes(&self) -> StoreResult<Option<i64>> {
        self.admin_database_bytes().await
    }
    fn backend_name(&self) -> &'static str {
        self.admin_backend_name()
    }

    async fn create_user(&self, u: NewUser) -> StoreResult<User> {
        // The first account is the admin: decided inside the INSERT so two concurrent
        // first sign-ups on SQLite (one writer) cannot both become admin.
        let sql = "INSERT INTO users (email, email_lc, username, username_lc, first_name, last_name, password_hash, is_admin, disabled, created_at, name_fold)
             SELECT $1, $2, $3, $4, $5, $6, $7, CASE WHEN EXISTS (SELECT 1 FROM users) THEN 0 ELSE 1 END, 0, $8, $9";
        let mut tx = self.begin_write().await?;
        // Under READ COMMITTED two concurrent first sign-ups could both see an empty
        // table; this lock (held to commit) serializes account creation.
        self.lock_accounts(&mut tx).await?;
        let fold = crate::domain::names::person_fold(&u.first_name, &u.last_name);
        let q = self
            .q(sql)
            .bind(u.email)
            .bind(u.email_lc)
            .bind(u.username)
            .bind(u.username_lc)
            .bind(u.first_name)
            .bind(u.last_name)
            .bind(u.password_hash)
            .bind(u.now)
            .bind(fold);
        let row = self.insert_returning(&mut tx, q, "users", &USER_COLS.replace("u.", "")).await?;
        let user = user_from(&row)?;
        tx.commit().await?;
        Ok(user)
    }

    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<User>> {
        let sql = format!("SELECT {USER_COLS} FROM users u WHERE u.id = $1");
        let row = self.q(&sql).bind(id).fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(user_from).transpose()?)
    }

    async fn user_for_login(&self, login_lc: &str) -> StoreResult<Option<(User, String)>> {
        let sql =
            format!("SELECT {USER_COLS}, u.password_hash FROM users u WHERE u.email_lc = $1 OR u.username_lc = $1");
        let row = self.q(&sql).bind(login_lc.to_string()).fetch_optional(&self.pool).await?;
        match row {
            Some(r) => Ok(Some((user_from(&r)?, r.try_get("password_hash")?))),
            None => Ok(None),
        }
    }

    async fn password_hash(&self, id: UserId) -> StoreResult<Option<String>> {
        let row = self.q("SELECT password_hash FROM users WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| r.try_get("password_hash")).transpose()?)
    }

    async fn list_users(&self, query: Option<&str>, limit: i64, enabled_only: bool) -> StoreResult<Vec<User>> {
        let enabled = if enabled_only { "u.disabled = 0" } else { "1 = 1" };
        let rows = match query.filter(|q| !q.trim().is_empty()) {
            Some(q) => {
                let sql = format!(
                    "SELECT {USER_COLS} FROM users u
                     WHERE {enabled} AND (u.username_lc LIKE $1 ESCAPE '\\' OR {NAME_FOLD} LIKE $1 ESCAPE '\\')
                     ORDER BY u.username_lc LIMIT $2"
                );
                self.q(&sql).bind(like_pattern(q.trim())).bind(limit).fetch_all(&self.pool).await?
            }
            None => {
                let sql = format!("SELECT {USER_COLS} FROM users u WHERE {enabled} ORDER BY u.username_lc LIMIT $1");
                self.q(&sql).bind(limit).fetch_all(&self.pool).await?
            }
        };
        Ok(rows.iter().map(user_from).collect::<Result<_, _>>()?)
    }

    async fn update_profile(&self, id: UserId, c: ProfileChange) -> StoreResult<User> {
        let names_changed = c.first_name.is_some() || c.last_name.is_some();
        let mut tx = self.begin_write().await?;
        if let Some(f) = c.first_name {
            self.q("UPDATE users SET first_name = $1 WHERE id = $2").bind(f).bind(id).execute(&mut *tx).await?;
        }
        if let Some(l) = c.last_name {
            self.q("UPDATE users SET last_name = $1 WHERE id = $2").bind(l).bind(id).execute(&mut *tx).await?;
        }
        if let Some((e, lc)) = c.email {
            self.q("UPDATE users SET email = $1, email_lc = $2 WHERE id = $3")
                .bind(e)
                .bind(lc)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some((u, lc)) = c.username {
            self.q("UPDATE users SET username = $1, username_lc = $2 WHERE id = $3")
                .bind(u)
                .bind(lc)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let sql = format!("SELECT {USER_COLS} FROM users u WHERE u.id = $1");
        let row = self.q(&sql).bind(id).fetch_optional(&mut *tx).await?;
        let user = row.as_ref().map(user_from).transpose()?.ok_or(StoreError::NotFound)?;
        if names_changed {
            self.q("UPDATE users SET name_fold = $1 WHERE id = $2")
                .bind(crate::domain::names::person_fold(&user.first_name, &user.last_name))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(user)
    }

    async fn set_password(&self, id: UserId, hash: &str) -> StoreResult<()> {
        self.q("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash.to_string())
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn set_disabled(&self, id: UserId, disabled: bool) -> StoreResult<()> {
        let r = self
            .q("UPDATE users SET disabled = $1 WHERE id = $2")
            .bind(b(disabled))
            .bind(id)
            .execute(&self.writer)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn disabled_user_ids(&self) -> StoreResult<Vec<UserId>> {
        let rows = self.q(DISABLED_IDS).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(|r| r.try_get("id")).collect::<Result<_, _>>()?)
    }

    async fn create_session(&self, hash: &str, user: UserId, now: i64, expires_at: i64) -> StoreResult<()> {
        self.q("INSERT INTO sessions (token_hash, user_id, created_at, last_seen_at, expires_at) VALUES ($1, $2, $3, $3, $4)")
            .bind(hash.to_string())
            .bind(user)
            .bind(now)
            .bind(expires_at)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn session(&self, hash: &str) -> StoreResult<Option<SessionRow>> {
        let sql = format!(
            "SELECT {USER_COLS}, s.created_at AS s_created, s.last_seen_at, s.expires_at
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1"
        );
        let row = self.q(&sql).bind(hash.to_string()).fetch_optional(&self.pool).await?;
        match row {
            Some(r) => Ok(Some(SessionRow {
                user: user_from(&r)?,
                created_at: r.try_get("s_created")?,
                last_seen_at: r.try_get("last_seen_at")?,
                expires_at: r.try_get("expires_at")?,
            })),
            None => Ok(None),
        }
    }

    async fn touch_session(&self, hash: &str, now: i64) -> StoreResult<()> {
        self.q("UPDATE sessions SET last_seen_at = $1 WHERE token_hash = $2")
            .bind(now)
            .bind(hash.to_string())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn delete_session(&self, hash: &str) -> StoreResult<()> {
        self.q("DELETE FROM sessions WHERE token_hash = $1").bind(hash.to_string()).execute(&self.writer).await?;
        Ok(())
    }

    async fn delete_user_sessions(&self, user: UserId, keep: Option<&str>) -> StoreResult<()> {
        self.q("DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2")
            .bind(user)
            .bind(keep.unwrap_or("").to_string())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn session_hashes(&self, user: UserId) -> StoreResult<Vec<String>> {
        let rows =
            self.q("SELECT token_hash FROM sessions WHERE user_id = $1").bind(user).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?)
    }

    async fn take_expired_sessions(&self, now: i64, limit: i64) -> StoreResult<Vec<(UserId, String)>> {
        let rows = self.q(EXPIRED_SESSIONS).bind(now).bind(limit).fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let hash: String = r.try_get("token_hash")?;
            self.q("DELETE FROM sessions WHERE token_hash = $1").bind(hash.clone()).execute(&self.writer).await?;
            out.push((r.try_get("user_id")?, hash));
        }
        Ok(out)
    }

    async fn create_api_token(&self, user: UserId, name: &str, hash: &str, now: i64) -> StoreResult<i64> {
        let q = self
            .q("INSERT INTO api_tokens (user_id, name, token_hash, created_at) VALUES ($1, $2, $3, $4)")
            .bind(user)
            .bind(name.to_string())
            .bind(hash.to_string())
            .bind(now);
        let mut conn = self.writer.acquire().await?;
        let row = self.insert_returning(&mut conn, q, "api_tokens", "id").await?;
        Ok(row.try_get("id")?)
    }

    async fn api_token_user(&self, hash: &str, now: i64) -> StoreResult<Option<(User, i64)>> {
        let sql = format!(
            "SELECT {USER_COLS}, t.id AS token_id, t.last_used_at FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1"
        );
        let row = self.q(&sql).bind(hash.to_string()).fetch_optional(&self.pool).await?;
        let Some(r) = row else { return Ok(None) };
        let user = user_from(&r)?;
        let token_id: i64 = r.try_get("token_id")?;
        let last: Option<i64> = r.try_get("last_used_at")?;
        // Record use at most once a minute: a bot polling with its token should not
        // turn every request into a write.
        if last.is_none_or(|t| now - t > 60_000) {
            self.q("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(token_id)
                .execute(&self.writer)
                .await?;
        }
        Ok(Some((user, token_id)))
    }

    async fn list_api_tokens(&self, user: UserId) -> StoreResult<Vec<ApiTokenInfo>> {
        let rows = self
            .q("SELECT id, name, created_at, last_used_at FROM api_tokens WHERE user_id = $1 ORDER BY id")
            .bind(user)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ApiTokenInfo {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    created_at: r.try_get("created_at")?,
                    last_used_at: r.try_get("last_used_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn delete_api_token(&self, user: UserId, id: i64) -> StoreResult<bool> {
        let r = self
            .q("DELETE FROM api_tokens WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user)
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn create_invite(&self, hash: &str, by: UserId, now: i64, expires_at: i64) -> StoreResult<()> {
        self.q("INSERT INTO invites (code_hash, created_by, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(hash.to_string())
            .bind(by)
            .bind(now)
            .bind(expires_at)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn claim_invite(&self, hash: &str, now: i64) -> StoreResult<bool> {
        let r = self
            .q("UPDATE invites SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL AND expires_at > $1")
            .bind(now)
            .bind(hash.to_string())
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn release_invite(&self, hash: &str) -> StoreResult<()> {
        self.q("UPDATE invites SET used_at = NULL WHERE code_hash = $1")
            .bind(hash.to_string())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn get_setting(&self, key: &str) -> StoreResult<Option<String>> {
        let row = self
            .q(format!("SELECT value FROM settings WHERE {} = $1", self.key_col()))
            .bind(key.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("value")).transpose()?)
    }

    async fn set_setting(&self, key: &str, value: &str) -> StoreResult<()> {
        let sql = match self.backend {
            Backend::Mysql => {
                "INSERT INTO settings (`key`, value) VALUES ($1, $2) ON DUPLICATE KEY UPDATE value = VALUES(value)"
            }
            Backend::Sqlite | Backend::Postgres => {
                "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            }
        };
        self.q(sql).bind(key.to_string()).bind(value.to_string()).execute(&self.writer).await?;
        Ok(())
    }

    async fn create_room(&self, r: NewRoom) -> StoreResult<Room> {
        let mut tx = self.begin_write().await?;
        let sql = "INSERT INTO rooms (kind, name, name_lc, topic, is_private, owner_id, keep_messages, keep_days, ephemeral, last_seq, created_at, topic_fold)
             VALUES ('room', $1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10)";
        let topic_fold = crate::domain::names::search_fold(&r.topic);
        let q = self
            .q(sql)
            .bind(r.name)
            .bind(r.name_lc)
            .bind(r.topic)
            .bind(b(r.is_private))
            .bind(r.owner_id)
            .bind(r.retention.keep_messages)
            .bind(r.retention.keep_days)
            .bind(b(r.retention.ephemeral))
            .bind(r.now)
            .bind(topic_fold);
        let row = self.insert_returning(&mut tx, q, "rooms", &ROOM_COLS.replace("r.", "")).await?;
        let room = room_from(&row)?;
        self.q("INSERT INTO memberships (room_id, user_id, joined_at, last_read_seq) VALUES ($1, $2, $3, 0)")
            .bind(room.id)
            .bind(r.owner_id)
            .bind(r.now)
            .execute(&mut *tx)
            .await?;
        self.q("INSERT INTO first_joins (room_id, user_id) VALUES ($1, $2)")
            .bind(room.id)
            .bind(r.owner_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(room)
    }

    async fn room(&self, id: RoomId) -> StoreResult<Option<Room>> {
        let sql = format!("SELECT {ROOM_COLS} FROM rooms r WHERE r.id = $1");
        let row = self.q(&sql).bind(id).fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(room_from).transpose()?)
    }

    async fn update_room(&self, id: RoomId, topic: &str, retention: Retention) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let r = self
            .q("UPDATE rooms SET topic = $1, keep_messages = $2, keep_days = $3, ephemeral = $4, topic_fold = $5 WHERE id = $6")
            .bind(topic.to_string())
            .bind(retention.keep_messages)
            .bind(retention.keep_days)
            .bind(b(retention.ephemeral))
            .bind(crate::domain::names::search_fold(topic))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        // A tighter policy applies at once: an ephemeral room keeps nothing, a smaller
        // N drops what no longer fits. (Keep-days is applied by the pruner.)
        if retention.ephemeral {
            self.q("DELETE FROM messages WHERE room_id = $1").bind(id).execute(&mut *tx).await?;
        } else if let Some(n) = retention.keep_messages {
            self.q(
                "DELETE FROM messages WHERE room_id = $1 AND seq <= (SELECT last_seq FROM rooms WHERE id = $1) - $2",
            )
            .bind(id)
            .bind(n)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn set_owner(&self, id: RoomId, owner: UserId) -> StoreResult<()> {
        self.q("UPDATE rooms SET owner_id = $1 WHERE id = $2").bind(owner).bind(id).execute(&self.writer).await?;
        Ok(())
    }

    async fn read_marker(&self, room: RoomId, user: UserId) -> StoreResult<Option<Seq>> {
        self.room_user_value("SELECT last_read_seq FROM memberships WHERE room_id = $1 AND user_id = $2", room, user)
            .await
    }

    async fn search_rooms(&self, viewer: UserId, query: Option<&str>, limit: i64) -> StoreResult<Vec<RoomListing>> {
        // Private rooms are listed only to their members.
        let base = format!(
            "SELECT {ROOM_COLS},
                (SELECT COUNT(*) FROM memberships mc JOIN users mu ON mu.id = mc.user_id
                  WHERE mc.room_id = r.id AND mu.disabled = 0) AS member_count,
                (SELECT COUNT(*) FROM memberships mm WHERE mm.room_id = r.id AND mm.user_id = $1) AS is_member,
                (SELECT COUNT(*) FROM room_bans rb WHERE rb.room_id = r.id AND rb.user_id = $1) AS banned
             FROM rooms r
             WHERE r.kind = 'room'
               AND (r.is_private = 0 OR EXISTS (SELECT 1 FROM memberships mp WHERE mp.room_id = r.id AND mp.user_id = $1))"
        );
        let rows = match query.filter(|q| !q.trim().is_empty()) {
            Some(q) => {
                let sql = format!(
                    "{base} AND (r.name_lc LIKE $2 ESCAPE '\\' OR {TOPIC_FOLD} LIKE $2 ESCAPE '\\') ORDER BY r.name_lc LIMIT $3"
                );
                self.q(&sql).bind(viewer).bind(like_pattern(q.trim())).bind(limit).fetch_all(&self.pool).await?
            }
            None => {
                let sql = format!("{base} ORDER BY r.name_lc LIMIT $2");
                self.q(&sql).bind(viewer).bind(limit).fetch_all(&self.pool).await?
            }
        };
        rows.iter()
            .map(|r| {
                Ok(RoomListing {
                    room: room_from(r)?,
                    member_count: r.try_get("member_count")?,
                    is_member: r.try_get::<i64, _>("is_member")? > 0,
                    banned: r.try_get::<i64, _>("banned")? > 0,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn dm_room(&self, a: UserId, bb: UserId, retention: Retention, now: i64) -> StoreResult<Room> {
        let key = crate::domain::dm_key(a, bb);
        let sql = format!("SELECT {ROOM_COLS} FROM rooms r WHERE r.dm_key = $1");
        if let Some(row) = self.q(&sql).bind(key.clone()).fetch_optional(&self.pool).await? {
            return Ok(room_from(&row)?);
        }
        let mut tx = self.begin_write().await?;
        let (insert, ignore) = self.insert_ignore();
        self.q(format!(
            "{insert} INTO rooms (kind, dm_key, topic, is_private, keep_messages, keep_days, ephemeral, last_seq, created_at)
             VALUES ('dm', $1, '', 1, $2, $3, 0, 0, $4){ignore}"
        ))
        .bind(key.clone())
        .bind(retention.keep_messages)
        .bind(retention.keep_days)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let row = self.q(&sql).bind(key).fetch_one(&mut *tx).await?;
        let room = room_from(&row)?;
        for u in [a, bb] {
            self.q(format!(
                "{insert} INTO memberships (room_id, user_id, joined_at, last_read_seq) VALUES ($1, $2, $3, 0){ignore}"
            ))
            .bind(room.id)
            .bind(u)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(room)
    }

    async fn add_member(&self, room: RoomId, user: UserId, now: i64) -> StoreResult<(bool, bool)> {
        let mut tx = self.begin_write().await?;
        let (insert, ignore) = self.insert_ignore();
        // A (re)joining member has read everything before their join.
        let added = self
            .q(format!(
                "{insert} INTO memberships (room_id, user_id, joined_at, last_read_seq)
             VALUES ($1, $2, $3, (SELECT last_seq FROM rooms WHERE id = $1)){ignore}"
            ))
            .bind(room)
            .bind(user)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        let first = self
            .q(format!("{insert} INTO first_joins (room_id, user_id) VALUES ($1, $2){ignore}"))
            .bind(room)
            .bind(user)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        tx.commit().await?;
        Ok((added, first))
    }

    async fn remove_member(&self, room: RoomId, user: UserId) -> StoreResult<bool> {
        let r = self
            .q("DELETE FROM memberships WHERE room_id = $1 AND user_id = $2")
            .bind(room)
            .bind(user)
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn is_member(&self, room: RoomId, user: UserId) -> StoreResult<bool> {
        let row = self
            .q("SELECT 1 AS one FROM memberships WHERE room_id = $1 AND user_id = $2")
            .bind(room)
            .bind(user)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    async fn members(&self, room: RoomId) -> StoreResult<Vec<User>> {
        let sql = format!(
            "SELECT {USER_COLS} FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.room_id = $1 ORDER BY u.username_lc"
        );
        let rows = self.q(&sql).bind(room).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(user_from).collect::<Result<_, _>>()?)
    }

    async fn user_rooms(&self, user: UserId) -> StoreResult<Vec<RoomSummary>> {
        self.summaries(user, None).await
    }

    async fn user_room(&self, user: UserId, room: RoomId) -> StoreResult<Option<RoomSummary>> {
        Ok(self.summaries(user, Some(room)).await?.pop())
    }

    async fn mark_read(&self, room: RoomId, user: UserId, seq: Seq, dm: bool) -> StoreResult<Seq> {
        if self.backend == Backend::Sqlite {
            // There a DM's read trims one step of the primary key (`trim_queries`).
            return self.mark_read_sqlite(room, user, seq, dm).await?.ok_or(StoreError::NotFound);
        }
        // Read markers only move forward and never past the room's last event.
        let update = "UPDATE memberships SET last_read_seq = CASE
                 WHEN $1 > last_read_seq THEN (CASE WHEN $1 < (SELECT last_seq FROM rooms WHERE id = $2) THEN $1 ELSE (SELECT last_seq FROM rooms WHERE id = $2) END)
                 ELSE last_read_seq END
             WHERE room_id = $2 AND user_id = $3";
        let row = if self.backend == Backend::Mysql {
            // No UPDATE … RETURNING: read the marker back inside the same transaction
            // (the UPDATE's row lock keeps it as written until the commit).
            let mut tx = self.begin_write().await?;
            let n = self.q(update).bind(seq).bind(room).bind(user).execute(&mut *tx).await?.rows_affected();
            let row = if n == 0 {
                None
            } else {
                self.q("SELECT last_read_seq FROM memberships WHERE room_id = $1 AND user_id = $2")
                    .bind(room)
                    .bind(user)
                    .fetch_optional(&mut *tx)
                    .await?
            };
            if dm && let Some(r) = &row {
                let marker: Seq = r.try_get("last_read_seq")?;
                self.q(dm_read_trim("$1", "$2", "$3")).bind(room).bind(user).bind(marker).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            row
        } else if dm {
            // The trim in the same statement, with the marker as the UPDATE left it.
            self.q(format!(
                "WITH m AS ({update} RETURNING last_read_seq),
                      d AS ({})
                 SELECT last_read_seq FROM m",
                dm_read_trim("$2", "$3", "(SELECT last_read_seq FROM m)")
            ))
            .bind(seq)
            .bind(room)
            .bind(user)
            .fetch_optional(&self.writer)
            .await?
        } else {
            self.q(format!("{update} RETURNING last_read_seq"))
                .bind(seq)
                .bind(room)
                .bind(user)
                .fetch_optional(&self.writer)
                .await?
        };
        match row {
            Some(r) => Ok(r.try_get("last_read_seq")?),
            None => Err(StoreError::NotFound),
        }
    }

    fn set_max_held_dms(&self, cap: i64) {
        self.held_dm_cap.store(cap.max(0), std::sync::atomic::Ordering::Relaxed);
    }

    async fn set_notify(&self, room: RoomId, user: UserId, level: &str) -> StoreResult<bool> {
        let n = self
            .q("UPDATE memberships SET notify = $1 WHERE room_id = $2 AND user_id = $3")
            .bind(level.to_string())
            .bind(room)
            .bind(user)
            .execute(&self.writer)
            .await?
            .rows_affected();
        if n > 0 || self.backend != Backend::Mysql {
            return Ok(n > 0);
        }
        // MySQL counts only changed rows: setting the same level again is still a member.
        Ok(self.is_member(room, user).await?)
    }

    // Moderation (moderation_sql.rs).
    async fn member_roles(&self, room: RoomId) -> StoreResult<Vec<MemberRole>> {
        self.mod_member_roles(room).await
    }
    async fn set_role(&self, room: RoomId, user: UserId, role: &str) -> StoreResult<bool> {
        self.mod_set_role(room, user, role).await
    }
    async fn ban(&self, room: RoomId, user: UserId, by: UserId, now: i64) -> StoreResult<bool> {
        self.mod_ban(room, user, by, now).await
    }
    async fn unban(&self, room: RoomId, user: UserId) -> StoreResult<bool> {
        self.mod_unban(room, user).await
    }
    async fn is_banned(&self, room: RoomId, user: UserId) -> StoreResult<bool> {
        self.mod_is_banned(room, user).await
    }
    async fn bans(&self, room: RoomId) -> StoreResult<Vec<User>> {
        self.mod_bans(room).await
    }
    async fn mute(&self, room: RoomId, user: UserId, until: i64) -> StoreResult<()> {
        self.mod_mute(room, user, until).await
    }
    async fn unmute(&self, room: RoomId, user: UserId) -> StoreResult<bool> {
        self.mod_unmute(room, user).await
    }
    async fn set_read_only(&self, room: RoomId, read_only: bool) -> StoreResult<()> {
        self.mod_set_read_only(room, read_only).await
    }
    async fn rename_room(&self, room: RoomId, name: &str, name_lc: &str) -> StoreResult<()> {
        self.mod_rename_room(room, name, name_lc).await
    }
    async fn block(&self, user: UserId, other: UserId, now: i64) -> StoreResult<bool> {
        self.mod_block(user, other, now).await
    }
    async fn unblock(&self, user: UserId, other: UserId) -> StoreResult<bool> {
        self.mod_unblock(user, other).await
    }
    async fn blocks(&self, user: UserId) -> StoreResult<Vec<User>> {
        self.mod_blocks(user).await
    }
    async fn blocked_ids(&self, user: UserId) -> StoreResult<Vec<UserId>> {
        self.mod_blocked_ids(user).await
    }
    async fn blocked_either(&self, a: UserId, other: UserId) -> StoreResult<bool> {
        self.mod_blocked_either(a, other).await
    }
    async fn dm_between(&self, a: UserId, other: UserId) -> StoreResult<Option<RoomId>> {
        self.mod_dm_between(a, other).await
    }
    async fn muted_until(&self, room: RoomId, user: UserId) -> StoreResult<Option<i64>> {
        self.mod_muted_until(room, user).await
    }
    async fn member_role(&self, room: RoomId, user: UserId) -> StoreResult<Option<String>> {
        self.mod_member_role(room, user).await
    }

    async fn append(&self, batch: &[NewMessage]) -> StoreResult<Vec<Appended>> {
        // A whole batch costs a handful of statements, not three per message nor two
        // per room: one duplicate lookup, one seq reservation for all its rooms, one
        // multi-row INSERT, one "last N" trim for all its rooms (and one per DM). On
        // SQLite a batch of plain messages sends them in two calls (sqlite_append.rs).
        if self.plain_sqlite_batch(batch)
            && let Some(done) = self.append_plain_sqlite(batch).await?
        {
            return Ok(done);
        }
        // On PostgreSQL, in one statement (postgres_append.rs).
        if self.plain_pg_batch(batch)
            && let Some(done) = self.append_plain_pg(batch).await?
        {
            return Ok(done);
        }
        let mut out: Vec<Option<Appended>> = vec![None; batch.len()];
        let mut tx = self.begin_write().await?;

        // 0. Several nodes may append to one room at once. On PostgreSQL and MySQL,
        //    lock the batch's rooms (in id order, so two batches never wait on each
        //    other in a cycle) BEFORE looking for retried sends: a retry of a send
        //    that another node is committing then waits and sees it, instead of
        //    inserting it again and failing its whole batch on the unique index.
        //    (SQLite has one writer.) MySQL has no UPDATE … RETURNING: the locked
        //    rows' last_seq, read here, is what step 2 adds to.
        let mut locked: HashMap<RoomId, (Seq, Option<i64>, String)> = HashMap::new();
        if self.backend != Backend::Sqlite {
            let mut rooms: Vec<RoomId> = batch.iter().map(|m| m.room_id).collect();
            rooms.sort_unstable();
            rooms.dedup();
            for chunk in rooms.chunks(500) {
                let n = self.padded(chunk.len());
                let ph: Vec<String> = (1..=n).map(|k| self.ph(k)).collect();
                let sql = format!(
                    "SELECT id, last_seq, keep_messages, kind FROM rooms WHERE id IN ({}) ORDER BY id FOR UPDATE",
                    ph.join(", ")
                );
                let mut q = self.q(sql);
                for k in 0..n {
                    q = q.bind(chunk[k.min(chunk.len() - 1)]);
                }
                for row in q.fetch_all(&mut *tx).await? {
                    if self.backend == Backend::Mysql {
                        locked.insert(
                            row.try_get("id")?,
                            (row.try_get("last_seq")?, row.try_get("keep_messages")?, row.try_get("kind")?),
                        );
                    }
                }
            }
        }

        // 1. Retried sends: already stored (earlier batch) or twice in this batch.
        let with_id: Vec<usize> = (0..batch.len()).filter(|i| batch[*i].client_id.is_some()).collect();
        let mut stored: HashMap<(RoomId, UserId, &str), Seq> = HashMap::new();
        for chunk in with_id.chunks(500) {
            let q = self.dedup_query(batch, chunk);
            for row in q.fetch_all(&mut *tx).await? {
                let (room, author, cid): (i64, i64, String) =
                    (row.try_get("room_id")?, row.try_get("author_id")?, row.try_get("client_id")?);
                if let Some(m) = chunk
                    .iter()
                    .map(|i| &batch[*i])
                    .find(|m| (m.room_id, m.author_id, m.client_id.as_deref()) == (room, author, Some(cid.as_str())))
                {
                    stored.insert((m.room_id, m.author_id, m.client_id.as_deref().unwrap_or("")), row.try_get("seq")?);
                }
            }
        }
        let Plan { fresh, dup_of, per_room } = Plan::of(batch, &stored, &mut out);

        // 2. Reserve a run of seqs per room, handed out in batch order.
        // ONE statement for all rooms of the batch: on PostgreSQL it also locks the
        // rooms' rows in one scan (index order), so two nodes' batches cannot lock them
        // in opposite orders.
        let mut touched: HashMap<RoomId, Reserved> = HashMap::new();
        if !per_room.is_empty() {
            let returning = self.backend != Backend::Mysql;
            let q = self.reserve_query(&per_room);
            let mut reserved = |room: RoomId, last: Seq, keep: Option<i64>, kind: &str| {
                if let Some(r) = Reserved::of(&per_room, room, last, keep, kind) {
                    touched.insert(room, r);
                }
            };
            if returning {
                for row in q.fetch_all(&mut *tx).await? {
                    let (room, r) = Reserved::from_row(&per_room, &row)?;
                    if let Some(r) = r {
                        touched.insert(room, r);
                    }
                }
            } else {
                // MySQL: the rows were locked (and read) in step 0 and nobody else
                // can have moved them since.
                q.execute(&mut *tx).await?;
                for (room, n) in &per_room {
                    if let Some((last, keep, kind)) = locked.get(room) {
                        reserved(*room, last + n, *keep, kind);
                    }
                }
            }
            if touched.len() != per_room.len() {
                return Err(StoreError::NotFound);
            }
        }
        let seqs = hand_out(batch, &fresh, &dup_of, &mut touched, &mut out);

        // 3. One INSERT per chunk of rows (10 parameters each; 5,000 stays far below
        //    the databases' parameter limits). On MySQL, chunks of a power of two
        //    rows, at most 256 (few distinct texts: see `padded`).
        let mut rest: &[(usize, Seq)] = &seqs;
        while !rest.is_empty() {
            let n = match self.backend {
                Backend::Mysql => 1usize << rest.len().min(256).ilog2(),
                Backend::Sqlite | Backend::Postgres => rest.len().min(500),
            };
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let q = self.insert_query(batch, chunk);
            q.execute(&mut *tx).await?;
        }

        // 3b. Actions take effect on their targets, in seq order; texts record whom
        //     they mention. Plain sends skip this entirely.
        for (i, seq) in &seqs {
            let m = &batch[*i];
            if m.kind.is_action() {
                self.apply_action(&mut tx, m, *seq).await?;
            } else if !m.mentions.is_empty() {
                self.insert_mentions(&mut tx, m.room_id, *seq, &m.mentions).await?;
            }
            if !m.attachments.is_empty() {
                self.attach_files(&mut tx, m, *seq).await?;
            }
        }

        // 4. "Keep the last N", once per room.
        for q in self.trim_queries(&touched) {
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.remember(&touched);
        answers(out)
    }

    async fn history(&self, room: RoomId, before: Option<Seq>, limit: i64) -> StoreResult<Vec<StoredMessage>> {
        let sql = format!(
            "SELECT {MSG_COLS} FROM {MSG_FROM}
             WHERE m.room_id = $1 AND m.seq < $2 AND m.target_seq IS NULL ORDER BY m.seq DESC LIMIT $3"
        );
        let mut conn = self.pool.acquire().await?;
        let rows = self.q(&sql).bind(room).bind(before.unwrap_or(i64::MAX)).bind(limit).fetch_all(&mut *conn).await?;
        let mut v: Vec<StoredMessage> = rows.iter().map(message_from).collect::<Result<_, _>>()?;
        drop(rows);
        v.reverse();
        self.decorate(&mut conn, room, &mut v).await?;
        Ok(v)
    }

    async fn since(&self, room: RoomId, after: Seq, limit: i64) -> StoreResult<Vec<StoredMessage>> {
        let sql = format!(
            "SELECT {MSG_COLS} FROM {MSG_FROM}
             WHERE m.room_id = $1 AND m.seq > $2 ORDER BY m.seq ASC LIMIT $3"
        );
        let mut conn = self.pool.acquire().await?;
        let rows = self.q(&sql).bind(room).bind(after).bind(limit).fetch_all(&mut *conn).await?;
        let mut v: Vec<StoredMessage> = rows.iter().map(message_from).collect::<Result<_, _>>()?;
        drop(rows);
        self.decorate(&mut conn, room, &mut v).await?;
        Ok(v)
    }

    async fn search(
        &self,
        viewer: UserId,
        query: &crate::domain::search::SearchQuery,
        room: Option<RoomId>,
        author: Option<UserId>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<StoredMessage>> {
        // The engine's own syntax, built from words that are only letters and digits
        // (SearchQuery::parse), so a query can never be an injection or a syntax error.
        let quoted = |t: &crate::domain::search::Term| format!("\"{}\"", t.words.join(" "));
        let (matches, order) = match self.backend {
            Backend::Sqlite => {
                let q: Vec<String> =
                    query.terms.iter().map(|t| format!("{}{}", quoted(t), if t.prefix { "*" } else { "" })).collect();
                // Newest first straight from the index: the FTS table is the outer loop
                // (CROSS JOIN fixes the order) and FTS5 walks its rowids downwards
                // lazily, so the search stops at the page's last visible hit. With
                // `rowid IN (SELECT … MATCH)` every hit in every room was collected
                // first (rtm-bench search, BENCHMARKS.md).
                (("m.rowid = f.rowid AND messages_fts MATCH $2".to_string(), q.join(" AND ")), "f.rowid DESC")
            }
            Backend::Postgres => {
                let q: Vec<String> = query
                    .terms
                    .iter()
                    .map(|t| match (t.words.len(), t.prefix) {
                        (1, true) => format!("{}:*", t.words[0]),
                        _ => format!("({})", t.words.join(" <-> ")),
                    })
                    .collect();
                (
                    (
                        // search_tsv is the stored tsvector (migration 0008): statistics for
                        // the planner and no re-parsing of the text per row.
                        "m.search_text IS NOT NULL AND m.search_tsv @@ to_tsquery('simple', $2)".to_string(),
                        q.join(" & "),
                    ),
                    "m.created_at DESC, m.room_id DESC, m.seq DESC",
                )
            }
            Backend::Mysql => {
                // Words shorter than the index keeps are left out, as the protocol
                // says (one required short word made every search find nothing), in
                // phrases too (InnoDB drops them there itself).
                let short = |w: &String| w.chars().count() < self.min_word_chars;
                let terms: Vec<crate::domain::search::Term> = query
                    .terms
                    .iter()
                    .filter_map(|t| {
                        let words: Vec<String> = if t.prefix && t.words.len() == 1 {
                            t.words.clone()
                        } else {
                            t.words.iter().filter(|w| !short(w)).cloned().collect()
                        };
                        (!words.is_empty()).then_some(crate::domain::search::Term { words, prefix: t.prefix })
                    })
                    .collect();
                if terms.is_empty() {
                    return Ok(Vec::new());
                }
                let q: Vec<String> = terms
                    .iter()
                    .map(|t| match (t.words.len(), t.prefix) {
                        (1, true) => format!("+{}*", t.words[0]),
                        (1, false) => format!("+{}", t.words[0]),
                        _ => format!("+{}", quoted(t)),
                    })
                    .collect();
                (
                    ("MATCH (m.search_text) AGAINST ($2 IN BOOLEAN MODE)".to_string(), q.join(" ")),
                    "m.created_at DESC, m.room_id DESC, m.seq DESC",
                )
            }
        };
        let (cond, text) = matches;
        if self.backend == Backend::Sqlite {
            // Sends, edits and trims queue their index changes (migration 0008): apply
            // what is queued, so the search sees every acknowledged message.
            super::sqlite::index_search(self).await?;
        }
        let fts = if self.backend == Backend::Sqlite { "messages_fts f CROSS JOIN " } else { "" };
        let sql = format!(
            "SELECT {MSG_COLS} FROM {fts}{MSG_FROM}
             WHERE {cond} AND m.kind = 'text' AND m.deleted = 0
               AND EXISTS (SELECT 1 FROM memberships ms WHERE ms.room_id = m.room_id AND ms.user_id = $1)
               AND ($3 = 0 OR m.room_id = $3) AND ($4 = 0 OR m.author_id = $4)
             ORDER BY {order} LIMIT $5 OFFSET $6"
        );
        let mut conn = self.pool.acquire().await?;
        let rows = self
            .q(&sql)
            .bind(viewer)
            .bind(text)
            .bind(room.unwrap_or(0))
            .bind(author.unwrap_or(0))
            .bind(limit)
            .bind(offset)
            .fetch_all(&mut *conn)
            .await?;
        let mut v: Vec<StoredMessage> = rows.iter().map(message_from).collect::<Result<_, _>>()?;
        drop(rows);
        // Reactions and mentions, per room (a page may span several).
        let mut rooms: Vec<RoomId> = v.iter().map(|m| m.room_id).collect();
        rooms.sort_unstable();
        rooms.dedup();
        for r in rooms {
            let mut part: Vec<StoredMessage> = v.iter().filter(|m| m.room_id == r).cloned().collect();
            self.decorate(&mut conn, r, &mut part).await?;
            for m in part {
                if let Some(slot) = v.iter_mut().find(|x| x.room_id == m.room_id && x.seq == m.seq) {
                    *slot = m;
                }
            }
        }
        Ok(v)
    }

    async fn unindexed_texts(&self, limit: i64) -> StoreResult<Vec<(RoomId, Seq, String)>> {
        let rows = self
            .q("SELECT room_id, seq, body FROM messages WHERE kind = 'text' AND deleted = 0 AND search_text IS NULL LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.try_get("room_id")?, r.try_get("seq")?, r.try_get("body")?)))
            .collect::<Result<_, sqlx::Error>>()?)
    }

    async fn set_search_text(&self, room: RoomId, seq: Seq, folded: &str) -> StoreResult<()> {
        self.q("UPDATE messages SET search_text = $1
             WHERE room_id = $2 AND seq = $3 AND kind = 'text' AND deleted = 0 AND search_text IS NULL")
            .bind(folded.to_string())
            .bind(room)
            .bind(seq)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn client_id_used(&self, room: RoomId, author: UserId, client_id: &str) -> StoreResult<bool> {
        let row = self
            .q("SELECT 1 AS one FROM messages WHERE room_id = $1 AND author_id = $2 AND client_id = $3")
            .bind(room)
            .bind(author)
            .bind(client_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    async fn search_texts_after(
        &self,
        after: (RoomId, Seq),
        limit: i64,
    ) -> StoreResult<Vec<(RoomId, Seq, String, Option<String>)>> {
        const COLS: &str = "SELECT room_id, seq, body, search_text FROM messages WHERE kind = 'text' AND deleted = 0";
        // The rest of `after`'s room, then the next rooms: two range scans of the
        // primary key that every database walks in order (an OR of the two, or a row
        // comparison, is not planned as one everywhere).
        let mut rows = self
            .q(format!("{COLS} AND room_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"))
            .bind(after.0)
            .bind(after.1)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        if (rows.len() as i64) < limit {
            let next = self
                .q(format!("{COLS} AND room_id > $1 ORDER BY room_id, seq LIMIT $2"))
                .bind(after.0)
                .bind(limit - rows.len() as i64)
                .fetch_all(&self.pool)
                .await?;
            rows.extend(next);
        }
        Ok(rows
            .iter()
            .map(|r| Ok((r.try_get("room_id")?, r.try_get("seq")?, r.try_get("body")?, r.try_get("search_text")?)))
            .collect::<Result<_, sqlx::Error>>()?)
    }

    async fn events_upto(&self, at: (RoomId, Seq)) -> StoreResult<(i64, i64)> {
        // Counts of primary-key entries, no row read, asked only while a re-index is
        // pending, when an admin opens the console. Two ranges, not an OR of them: in
        // the server, SQLite took ~2 µs an entry for the OR (the console's answer 1 s
        // once 460,000 of 1,000,000 were passed); with the ranges, 0.01-0.08 s all
        // the way (BENCHMARKS.md, round 12).
        let row = self
            .q("SELECT (SELECT COUNT(*) FROM messages WHERE room_id < $1) AS before_room,
                       (SELECT COUNT(*) FROM messages WHERE room_id = $1 AND seq <= $2) AS in_room,
                       (SELECT COUNT(*) FROM messages) AS total")
            .bind(at.0)
            .bind(at.1)
            .fetch_one(&self.pool)
            .await?;
        let (before, within): (i64, i64) = (row.try_get("before_room")?, row.try_get("in_room")?);
        Ok((before + within, row.try_get("total")?))
    }

    async fn replace_search_texts(&self, rows: &[(RoomId, Seq, String, String)]) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for (room, seq, old, new) in rows {
            self.q("UPDATE messages SET search_text = $1 WHERE room_id = $2 AND seq = $3 AND search_text = $4")
                .bind(new.clone())
                .bind(*room)
                .bind(*seq)
                .bind(old.clone())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn message(&self, room: RoomId, seq: Seq) -> StoreResult<Option<StoredMessage>> {
        let sql = format!("SELECT {MSG_COLS} FROM {MSG_FROM} WHERE m.room_id = $1 AND m.seq = $2");
        let mut conn = self.pool.acquire().await?;
        let Some(row) = self.q(&sql).bind(room).bind(seq).fetch_optional(&mut *conn).await? else {
            return Ok(None);
        };
        let mut v = vec![message_from(&row)?];
        self.decorate(&mut conn, room, &mut v).await?;
        Ok(v.pop())
    }

    async fn skeleton_taken(&self, kind: NameKind, skeleton: &str, except: Option<i64>) -> StoreResult<Option<String>> {
        let (table, name, col) = kind.columns();
        let sql = format!("SELECT {name} AS name FROM {table} WHERE {col} = $1 AND id <> $2 LIMIT 1");
        let row = self.q(&sql).bind(skeleton.to_string()).bind(except.unwrap_or(-1)).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| r.try_get("name")).transpose()?)
    }

    async fn set_skeleton(&self, kind: NameKind, id: i64, skeleton: &str) -> StoreResult<()> {
        let (table, _, col) = kind.columns();
        let sql = format!("UPDATE {table} SET {col} = $1 WHERE id = $2");
        self.q(&sql).bind(skeleton.to_string()).bind(id).execute(&self.writer).await?;
        Ok(())
    }

    async fn missing_skeletons(&self, kind: NameKind, limit: i64) -> StoreResult<Vec<(i64, String)>> {
        let (table, name, col) = kind.columns();
        let sql = format!(
            "SELECT id, {name} AS name FROM {table} WHERE {col} IS NULL AND {name} IS NOT NULL ORDER BY id LIMIT $1"
        );
        let rows = self.q(&sql).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok((r.try_get("id")?, r.try_get("name")?))).collect()
    }

    async fn last_seqs(&self, rooms: &[RoomId]) -> StoreResult<Vec<(RoomId, Seq)>> {
        let mut out = Vec::with_capacity(rooms.len());
        for chunk in rooms.chunks(500) {
            let n = self.padded(chunk.len());
            let ph: Vec<String> = (1..=n).map(|k| self.ph(k)).collect();
            let sql = format!("SELECT id, last_seq FROM rooms WHERE id IN ({})", ph.join(", "));
            let mut q = self.q(sql);
            for k in 0..n {
                q = q.bind(chunk[k.min(chunk.len() - 1)]);
            }
            for row in q.fetch_all(&self.pool).await? {
                out.push((row.try_get("id")?, row.try_get("last_seq")?));
            }
        }
        Ok(out)
    }

    async fn earliest_seq(&self, room: RoomId) -> StoreResult<Option<Seq>> {
        let row =
            self.q("SELECT MIN(seq) AS s FROM messages WHERE room_id = $1").bind(room).fetch_one(&self.pool).await?;
        Ok(row.try_get("s")?)
    }

    async fn count_messages(&self, room: RoomId) -> StoreResult<i64> {
        let row =
            self.q("SELECT COUNT(*) AS n FROM messages WHERE room_id = $1").bind(room).fetch_one(&self.pool).await?;
        Ok(row.try_get("n")?)
    }

    async fn prune_expired(&self, now: i64) -> StoreResult<u64> {
        let r = self.q(PRUNE_EXPIRED).bind(now).execute(&self.writer).await?;
        Ok(r.rows_affected())
    }

    async fn maintain(&self) -> StoreResult<()> {
        if self.backend == Backend::Sqlite {
            super::sqlite::index_search(self).await?;
            super::sqlite::maintain_wal(self).await?;
        }
        Ok(())
    }

    async fn index_search(&self) -> StoreResult<u64> {
        match self.backend {
            Backend::Sqlite => super::sqlite::index_search(self).await,
            Backend::Postgres | Backend::Mysql => Ok(0),
        }
    }

    // Files (files_sql.rs).
    async fn insert_file(&self, f: &crate::domain::files::StoredFile) -> StoreResult<()> {
        self.files_insert(f).await
    }
    async fn user_file_bytes(&self, user: UserId) -> StoreResult<i64> {
        self.files_user_bytes(user).await
    }
    async fn readable_file(&self, id: &str, viewer: UserId) -> StoreResult<Option<crate::domain::files::StoredFile>> {
        self.files_readable(id, viewer).await
    }
    async fn files_by_ids(
        &self,
        ids: &[String],
    ) -> StoreResult<Vec<(crate::domain::files::StoredFile, Option<String>)>> {
        self.files_by_id_list(ids).await
    }
    async fn referenced_hashes(&self, hashes: &[String]) -> StoreResult<Vec<String>> {
        self.files_referenced(hashes).await
    }
    async fn delete_pending_files(&self, before: i64) -> StoreResult<u64> {
        self.files_delete_pending(before).await
    }
}

// Files and attachments (issue 13), a child module so it shares this file's helpers.
#[path = "files_sql.rs"]
mod files_sql;

impl SqlStore {
    /// The user's memberships with their rooms, unread and mention counts and, for a
    /// DM, the peer: all of them, or the one of `room`. One query.
    async fn summaries(&self, user: UserId, room: Option<RoomId>) -> StoreResult<Vec<RoomSummary>> {
        let one = if room.is_some() { "AND r.id = $2" } else { "" };
        let sql = format!(
            "SELECT {ROOM_COLS}, m.last_read_seq,
                (SELECT COUNT(*) FROM messages x WHERE x.room_id = r.id AND x.seq > m.last_read_seq AND x.author_id <> $1 AND x.target_seq IS NULL) AS unread,
                (SELECT COUNT(*) FROM mentions mn WHERE mn.room_id = r.id AND mn.user_id = $1 AND mn.seq > m.last_read_seq) AS mentions,
                m.notify, m.role,
                p.id AS p_id, p.email AS p_email, p.username AS p_username, p.first_name AS p_first,
                p.last_name AS p_last, p.is_admin AS p_admin, p.disabled AS p_disabled, p.created_at AS p_created
             FROM memberships m JOIN rooms r ON r.id = m.room_id
             LEFT JOIN memberships o ON r.kind = 'dm' AND o.room_id = r.id AND o.user_id <> $1
             LEFT JOIN users p ON p.id = o.user_id
             WHERE m.user_id = $1 {one} ORDER BY r.kind, r.name_lc, r.id"
        );
        let mut query = self.q(&sql).bind(user);
        if let Some(room) = room {
            query = query.bind(room);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let peer = match r.try_get::<Option<i64>, _>("p_id")? {
                Some(id) => Some(User {
                    id,
                    email: r.try_get("p_email")?,
                    username: r.try_get("p_username")?,
                    first_name: r.try_get("p_first")?,
                    last_name: r.try_get("p_last")?,
                    is_admin: r.try_get::<i64, _>("p_admin")? != 0,
                    disabled: r.try_get::<i64, _>("p_disabled")? != 0,
                    created_at: r.try_get("p_created")?,
                }),
                None => None,
            };
            out.push(RoomSummary {
                room: room_from(r)?,
                last_read_seq: r.try_get("last_read_seq")?,
                unread: r.try_get("unread")?,
                peer,
                mentions: r.try_get("mentions")?,
                notify: r.try_get("notify")?,
                role: r.try_get("role")?,
            });
        }
        Ok(out)
    }
}
