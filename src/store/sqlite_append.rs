//! SQLite's append of plain messages in two calls to the connection's thread instead
//! of six (issue 16). sqlx runs each SQLite connection on a thread of its own and
//! hands every statement to it and every result back through channels; a commit of
//! one message (the common case when senders are spread over time, as in many small
//! rooms) was BEGIN, the retry lookup, the seq reservation, the INSERT, the trim and
//! COMMIT: six round trips, each a thread wake-up on both sides, which cost more of
//! the writer's CPU than SQLite's own work. Here the first call is BEGIN + lookup +
//! reservation, the second INSERT + trims + COMMIT, each one string whose statements
//! take their binds in order (`Q::then`).
//!
//! The reservation is made before the lookup's answer is known, on the bet that no
//! message of the batch is a retry of one stored earlier. When one is (a client
//! resending after a lost ack: rare), the transaction is rolled back and the caller
//! takes the general path, which looks first. Actions, mentions and attachments touch
//! other tables, so batches with any of them take the general path too.
//!
//! The transaction is not sqlx's `Transaction` (which would cost its own round trips),
//! so every exit after BEGIN either commits or rolls back; a connection that still
//! carried an open transaction (a cancelled append) makes the next BEGIN fail, whose
//! error path rolls it back, so the writer never stays stuck.

use std::collections::HashMap;

use sqlx::{Column, Row};

use super::{Backend, Plan, Reserved, SqlStore, answers, hand_out};
use crate::{
    domain::{RoomId, Seq},
    store::{Appended, NewMessage, StoreError, StoreResult},
};

/// At most this many messages with a client id in one lookup (the general path's
/// chunk), so the fast path needs one lookup statement.
const MAX_LOOKUP: usize = 500;

impl SqlStore {
    /// Whether [`SqlStore::append_plain_sqlite`] can take `batch`.
    pub(super) fn plain_sqlite_batch(&self, batch: &[NewMessage]) -> bool {
        self.backend == Backend::Sqlite
            && !batch.is_empty()
            && batch.len() <= MAX_LOOKUP
            && batch.iter().all(|m| !m.kind.is_action() && m.mentions.is_empty() && m.attachments.is_empty())
    }

    /// Appends a batch that [`SqlStore::plain_sqlite_batch`] accepted. `Ok(None)`: a
    /// message of it was stored already, nothing was written, take the general path.
    pub(super) async fn append_plain_sqlite(&self, batch: &[NewMessage]) -> StoreResult<Option<Vec<Appended>>> {
        let mut out: Vec<Option<Appended>> = vec![None; batch.len()];
        // Retries within the batch are known without the database.
        let Plan { fresh, dup_of, per_room } = Plan::of(batch, &HashMap::new(), &mut out);
        let with_id: Vec<usize> = (0..batch.len()).filter(|i| batch[*i].client_id.is_some()).collect();

        let _wait = crate::metrics::PoolWait::start();
        let mut conn = self.writer.acquire().await?;
        drop(_wait);
        let mut first = self.q("BEGIN IMMEDIATE");
        if !with_id.is_empty() {
            first = first.then(self.dedup_query(batch, &with_id));
        }
        first = first.then(self.reserve_query(&per_room));

        // Ok(false): a message was stored before; nothing is kept of this attempt.
        let result = async {
            let mut touched: HashMap<RoomId, Reserved> = HashMap::new();
            for row in first.fetch_all(&mut *conn).await? {
                // The lookup's rows carry client_id; the reservation's do not.
                if row.columns().iter().any(|c| c.name() == "client_id") {
                    return Ok(false);
                }
                let (room, r) = Reserved::from_row(&per_room, &row)?;
                if let Some(r) = r {
                    touched.insert(room, r);
                }
            }
            if touched.len() != per_room.len() {
                return Err(StoreError::NotFound);
            }
            let seqs: Vec<(usize, Seq)> = hand_out(batch, &fresh, &dup_of, &mut touched, &mut out);
            let mut second = self.insert_query(batch, &seqs);
            for trim in self.trim_queries(&touched) {
                second = second.then(trim);
            }
            second.then(self.q("COMMIT")).execute(&mut *conn).await?;
            Ok::<_, StoreError>(true)
        }
        .await;

        match result {
            Ok(true) => answers(out).map(Some),
            Ok(false) => {
                self.q("ROLLBACK").execute(&mut *conn).await?;
                Ok(None)
            }
            Err(e) => {
                // Whatever ran of the two strings is undone; if BEGIN itself failed
                // there is nothing to roll back and this fails harmlessly.
                if let Err(rb) = self.q("ROLLBACK").execute(&mut *conn).await {
                    tracing::debug!(error = %rb, "rollback after a failed append");
                }
                Err(e)
            }
        }
    }
}
