//! SQLite's append of plain messages in ONE call to the connection's thread when the
//! rooms are known, two otherwise, instead of six (issue 16). sqlx runs each SQLite
//! connection on a thread of its own and hands every statement to it and every result
//! back through channels: each call is a wake-up of that thread and of the task
//! waiting for it, which costs more of the writer's CPU than SQLite's own work on a
//! commit of one message (the common case when senders are spread over time, as in
//! DMs and small rooms).
//!
//! Two calls: BEGIN, the retry lookup and the seq reservation, whose `RETURNING` rows
//! (last seq, "keep the last N", kind) decide the seqs and trims; then the INSERT, the
//! trims and COMMIT. Each call is one string whose statements take their binds in order
//! (`Q::then`). The reservation is made before the lookup's answer is known, on the bet
//! that no message of the batch is a retry of one stored earlier; when one is (a
//! client resending after a lost ack: rare), the transaction is rolled back and the
//! caller takes the general path, which looks first.
//!
//! One call: what the last append of a room returned is kept ([`Known`]; SQLite has one
//! writer, this one), so the seqs and trims can be computed before the call, exactly as
//! the two-call path computes them after its first. The reservation checks the
//! prediction inside the transaction: a room whose last seq, policy or kind is not
//! what was known (another process wrote, a policy changed, an action went through the
//! general path) gets NULL for its last seq, which the NOT NULL column refuses. A
//! retry of a stored message needs no lookup either: the unique index on (room,
//! author, client id) refuses its INSERT. Either way the transaction is rolled back,
//! the batch's rooms are forgotten, and the caller takes the general path.
//!
//! Actions, mentions and attachments touch other tables, so batches with any of them
//! take the general path. The transaction is not sqlx's `Transaction` (which would
//! cost its own calls), so every exit after BEGIN either commits or rolls back, and a
//! call dropped midway (a cancelled task) closes the connection ([`Writing`]), which
//! rolls back whatever it began: the writer never goes back to the pool inside a
//! transaction.

use std::{
    collections::HashMap,
    ops::{Deref, DerefMut},
};

use sqlx::{Any, AnyConnection, Column, Row, pool::PoolConnection};

use super::{Backend, Plan, Q, Reserved, SqlStore, answers, hand_out};
use crate::{
    domain::{RoomId, Seq, UserId},
    store::{Appended, NewMessage, StoreError, StoreResult},
};

/// At most this many messages with a client id in one lookup (the general path's
/// chunk), so the two-call path needs one lookup statement.
const MAX_LOOKUP: usize = 500;
/// Rooms remembered at most; past it the memory starts over (a room unknown again
/// costs one two-call append).
const MAX_KNOWN: usize = 100_000;

/// What the last append of a room left in its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Known {
    last: Seq,
    keep: Option<i64>,
    is_dm: bool,
}

/// The writer's connection while this module's strings (BEGIN … COMMIT) run on it.
/// A call dropped midway (its task cancelled) can leave the transaction open, and the
/// connection would go back to the pool inside it: the next write would fail at its
/// BEGIN, or run inside a transaction nobody commits. Unless [`Writing::settle`]d, the
/// connection is closed when this is dropped, which rolls back whatever it began; the
/// pool opens another.
pub(crate) struct Writing {
    conn: PoolConnection<Any>,
    settled: bool,
}

impl Writing {
    pub(crate) async fn acquire(pool: &sqlx::AnyPool) -> Result<Self, sqlx::Error> {
        let _wait = crate::metrics::PoolWait::start();
        Ok(Writing { conn: pool.acquire().await?, settled: false })
    }

    /// No transaction is open on the connection: it may go back to the pool.
    pub(crate) fn settle(&mut self) {
        self.settled = true;
    }
}

impl Deref for Writing {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.conn
    }
}

impl DerefMut for Writing {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        if !self.settled {
            self.conn.close_on_drop();
        }
    }
}

impl SqlStore {
    /// Whether [`SqlStore::append_plain_sqlite`] can take `batch`.
    pub(super) fn plain_sqlite_batch(&self, batch: &[NewMessage]) -> bool {
        self.backend == Backend::Sqlite && super::plain_batch(batch, MAX_LOOKUP)
    }

    /// Keeps what a committed append left in its rooms' rows (SQLite only: there this
    /// connection is the only writer). The general path calls it too.
    pub(super) fn remember(&self, touched: &HashMap<RoomId, Reserved>) {
        if self.backend != Backend::Sqlite {
            return;
        }
        let mut known = self.known.lock();
        if known.len() + touched.len() > MAX_KNOWN {
            known.clear();
        }
        for (room, t) in touched {
            known.insert(*room, Known { last: t.last, keep: t.keep, is_dm: t.is_dm });
        }
    }

    /// Appends a batch that [`SqlStore::plain_sqlite_batch`] accepted. `Ok(None)`: a
    /// message of it was stored before, or a room was not as known; nothing was
    /// written, take the general path.
    pub(crate) async fn append_plain_sqlite(&self, batch: &[NewMessage]) -> StoreResult<Option<Vec<Appended>>> {
        let mut out: Vec<Option<Appended>> = vec![None; batch.len()];
        // Retries within the batch are known without the database.
        let Plan { fresh, dup_of, per_room } = Plan::of(batch, &HashMap::new(), &mut out);
        let predicted: Option<HashMap<RoomId, Reserved>> = {
            let known = self.known.lock();
            per_room
                .iter()
                .map(|(room, n)| {
                    let k = known.get(room)?;
                    Some((
                        *room,
                        Reserved::of(&per_room, *room, k.last + n, k.keep, if k.is_dm { "dm" } else { "room" })?,
                    ))
                })
                .collect()
        };
        let mut conn = Writing::acquire(&self.writer).await?;
        let result = match predicted {
            Some(mut touched) => {
                let check = self.guarded_reserve(&per_room, &touched);
                let seqs = hand_out(batch, &fresh, &dup_of, &mut touched, &mut out);
                let mut all = self.q("BEGIN IMMEDIATE").then(check).then(self.insert_padded(batch, &seqs));
                for trim in self.trim_queries(&touched) {
                    all = all.then(trim);
                }
                match all.then(self.q("COMMIT")).fetch_all(&mut *conn).await {
                    Ok(_) => Ok(Some(touched)),
                    // Not as predicted, or a retry of a stored message.
                    Err(e) if super::lost_bet(&e) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
            None => self.two_calls(batch, &fresh, &dup_of, &per_room, &mut out, &mut conn).await,
        };
        match result {
            Ok(Some(touched)) => {
                conn.settle();
                self.remember(&touched);
                self.counted(super::AppendPath::Short);
                answers(out).map(Some)
            }
            Ok(None) => {
                self.counted(super::AppendPath::Retaken);
                self.forget(&per_room);
                self.q("ROLLBACK").execute(&mut *conn).await?;
                conn.settle();
                Ok(None)
            }
            Err(e) => {
                self.forget(&per_room);
                // Whatever ran is undone; if BEGIN itself failed there is nothing to
                // roll back and this fails harmlessly.
                match self.q("ROLLBACK").execute(&mut *conn).await {
                    Ok(_) => conn.settle(),
                    Err(rb) => tracing::debug!(error = %rb, "rollback after a failed append"),
                }
                Err(e)
            }
        }
    }

    /// The two-call append (see the module's text): `Ok(None)` when the lookup found a
    /// message stored before (the transaction is still open: the caller rolls back).
    async fn two_calls(
        &self,
        batch: &[NewMessage],
        fresh: &[usize],
        dup_of: &[(usize, usize)],
        per_room: &[(RoomId, i64)],
        out: &mut [Option<Appended>],
        conn: &mut AnyConnection,
    ) -> StoreResult<Option<HashMap<RoomId, Reserved>>> {
        let with_id: Vec<usize> = (0..batch.len()).filter(|i| batch[*i].client_id.is_some()).collect();
        let mut first = self.q("BEGIN IMMEDIATE");
        if !with_id.is_empty() {
            first = first.then(self.dedup_query(batch, &with_id));
        }
        first = first.then(self.reserve_query(per_room));
        let mut touched: HashMap<RoomId, Reserved> = HashMap::new();
        for row in first.fetch_all(&mut *conn).await? {
            // The lookup's rows carry client_id; the reservation's do not.
            if row.columns().iter().any(|c| c.name() == "client_id") {
                return Ok(None);
            }
            let (room, r) = Reserved::from_row(per_room, &row)?;
            if let Some(r) = r {
                touched.insert(room, r);
            }
        }
        if touched.len() != per_room.len() {
            return Err(StoreError::NotFound);
        }
        let seqs: Vec<(usize, Seq)> = hand_out(batch, fresh, dup_of, &mut touched, out);
        let mut second = self.insert_query(batch, &seqs);
        for trim in self.trim_queries(&touched) {
            second = second.then(trim);
        }
        second.then(self.q("COMMIT")).execute(&mut *conn).await?;
        Ok(Some(touched))
    }

    fn forget(&self, per_room: &[(RoomId, i64)]) {
        let mut known = self.known.lock();
        for (room, _) in per_room {
            known.remove(room);
        }
    }

    /// The seq reservation of [`SqlStore::reserve_query`], but a room whose row is not
    /// as predicted (`touched`: its last seq after the batch, policy and kind) gets
    /// NULL for its last seq, which the column refuses: the whole call fails. Rooms
    /// padded as [`SqlStore::padded`] says (a repeated room changes nothing).
    fn guarded_reserve(&self, per_room: &[(RoomId, i64)], touched: &HashMap<RoomId, Reserved>) -> Q {
        let len = self.padded(per_room.len());
        let padded = |k: usize| per_room[k.min(per_room.len() - 1)];
        let one =
            " WHEN ? THEN (CASE WHEN last_seq = ? AND keep_messages IS ? AND (kind = 'dm') = ? THEN last_seq + ? END)";
        let ids = vec!["?"; len].join(", ");
        let mut q = self.q(format!("UPDATE rooms SET last_seq = CASE id{} END WHERE id IN ({ids})", one.repeat(len)));
        for k in 0..len {
            let (room, n) = padded(k);
            let (last, keep, is_dm) = touched.get(&room).map_or((0, None, false), |t| (t.last, t.keep, t.is_dm));
            q = q.bind(room).bind(last - n).bind(keep).bind(i64::from(is_dm)).bind(n);
        }
        for k in 0..len {
            q = q.bind(padded(k).0);
        }
        q
    }

    /// Moves `user`'s read marker in `room` forward to `seq`, never past the room's last
    /// seq (`None`: not a member), and, in a DM, deletes the other member's messages
    /// this read makes deletable: those now read and past the retention's cut. The
    /// append trims what the cut passes, up to what was read
    /// ([`SqlStore::trim_queries`]); together neither walks the messages held for
    /// someone who has not read them. One call (BEGIN to COMMIT) on the one writer, so
    /// no send comes between. A room that is not a DM (`dm` false) costs just the
    /// UPDATE.
    pub(super) async fn mark_read_sqlite(
        &self,
        room: RoomId,
        user: UserId,
        seq: Seq,
        dm: bool,
    ) -> StoreResult<Option<Seq>> {
        let marker = || {
            self.q("UPDATE memberships SET last_read_seq = CASE
                      WHEN ? > last_read_seq THEN MIN(?, (SELECT last_seq FROM rooms WHERE id = ?))
                      ELSE last_read_seq END
                    WHERE room_id = ? AND user_id = ? RETURNING last_read_seq")
                .bind(seq)
                .bind(seq)
                .bind(room)
                .bind(room)
                .bind(user)
        };
        let mut conn = Writing::acquire(&self.writer).await?;
        if !dm {
            let row = marker().fetch_optional(&mut *conn).await?;
            conn.settle();
            return Ok(row.map(|r| r.try_get("last_read_seq")).transpose()?);
        }
        let trim = self.read_trim(room, user, seq);
        let all = self.q("BEGIN IMMEDIATE").then(trim).then(marker()).then(self.q("COMMIT"));
        match all.fetch_all(&mut *conn).await {
            Ok(rows) => {
                conn.settle();
                Ok(rows.first().map(|r| r.try_get("last_read_seq")).transpose()?)
            }
            Err(e) => {
                // As an append's error path: whatever ran is undone.
                match self.q("ROLLBACK").execute(&mut *conn).await {
                    Ok(_) => conn.settle(),
                    Err(rb) => tracing::debug!(error = %rb, "rollback after a failed read"),
                }
                Err(e.into())
            }
        }
    }

    /// The DELETE of [`SqlStore::mark_read_sqlite`]: `room`'s messages by others than
    /// `user` after `user`'s marker (before this read moves it) up to `seq` and up to
    /// the retention's cut (NULL, so nothing, in a room or with no "keep the last N").
    pub(crate) fn read_trim(&self, room: RoomId, user: UserId, seq: Seq) -> Q {
        self.q("DELETE FROM messages WHERE room_id = ? AND author_id <> ?
                  AND seq > (SELECT last_read_seq FROM memberships WHERE room_id = ? AND user_id = ?)
                  AND seq <= ?
                  AND seq <= (SELECT last_seq - keep_messages FROM rooms WHERE id = ? AND kind = 'dm')")
            .bind(room)
            .bind(user)
            .bind(room)
            .bind(user)
            .bind(seq)
            .bind(room)
    }

    /// [`SqlStore::insert_query`] with the rows padded as [`SqlStore::padded`] says:
    /// padding rows are all NULL and left out by the `WHERE`.
    fn insert_padded(&self, batch: &[NewMessage], rows: &[(usize, Seq)]) -> Q {
        let len = self.padded(rows.len());
        let sql = format!(
            "INSERT INTO messages (room_id, seq, author_id, kind, body, client_id, created_at, target_seq, reply_to, search_text)
             SELECT column1, column2, column3, column4, column5, column6, column7, column8, column9, column10
               FROM (VALUES {}) WHERE column1 IS NOT NULL",
            vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; len].join(", ")
        );
        let mut q = super::bind_rows(self.q(sql), batch, rows);
        for _ in rows.len()..len {
            for _ in 0..10 {
                q = q.bind(None::<i64>);
            }
        }
        q
    }
}
