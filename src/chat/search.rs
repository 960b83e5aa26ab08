//! Searching what a person may read: the rooms and DMs they are in now (never a
//! private room they left, never someone else's DM), newest first, with where the
//! words are so a client can highlight them as text. The database's own full-text
//! engine does the matching (FTS5, a tsvector GIN index, InnoDB FULLTEXT) over text
//! the server reduced to its folded words (`domain::search::index_text`), so matching
//! is the same everywhere.

use serde::Serialize;

use super::{Actor, Chat, ChatError, ChatResult};
use crate::{
    domain::{RoomId, Seq, search::SearchQuery},
    store::DynStore,
    ws::protocol::Event,
};

/// Results one page may hold.
pub const MAX_RESULTS: u32 = 50;
/// How deep paging goes (`offset`): a search is for finding, not for exporting.
pub const MAX_OFFSET: u32 = 1000;

/// One search result: the message as history shows it, and where the words are.
#[derive(Debug, Clone, Serialize)]
pub struct SearchHit {
    #[serde(flatten)]
    pub event: Event,
    /// `[start, end)` character offsets (Unicode scalar values) in `text`.
    pub highlights: Vec<[usize; 2]>,
}

impl Chat {
    /// Messages matching `q`, newest first: at most `limit` (clamped to 1–50) after
    /// skipping `offset` (below 0 counts as 0; past 1000 finds nothing); and whether
    /// more match on a page that paging can still reach.
    pub async fn search(
        &self,
        actor: &Actor,
        q: &str,
        room: Option<RoomId>,
        author: Option<&str>,
        limit: Option<i64>,
        offset: Option<i64>,
    ) -> ChatResult<(Vec<SearchHit>, bool)> {
        let query = SearchQuery::parse(q)?;
        self.read_limiter.check_key(&actor.user.id).map_err(|_| ChatError::RateLimited)?;
        if let Some(room) = room {
            self.member_room(actor, room).await?;
        }
        let author = match author {
            Some(name) => Some(self.find_user(name).await?.id),
            None => None,
        };
        let limit = limit.unwrap_or(20).clamp(1, i64::from(MAX_RESULTS));
        let offset = offset.unwrap_or(0).max(0);
        if offset > i64::from(MAX_OFFSET) {
            return Ok((Vec::new(), false));
        }
        let mut rows = self.store.search(actor.user.id, &query, room, author, limit + 1, offset).await?;
        // The next page starts at offset + limit: past the deepest one, nothing follows.
        let more = rows.len() as i64 > limit && offset + limit <= i64::from(MAX_OFFSET);
        rows.truncate(limit as usize);
        Ok((
            rows.into_iter()
                .map(|m| {
                    let highlights = query.highlights(&m.body);
                    SearchHit { event: super::messages::to_event(m), highlights }
                })
                .collect(),
            more,
        ))
    }
}

/// How often the server applies the search index's queue (SQLite): a commit of one
/// or two messages no longer writes an index segment of its own, and the queue stays
/// a few hundred rows long under chat load.
const INDEX_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Applies the search index's queue every [`INDEX_EVERY`] for the server's life.
pub(super) fn index_in_background(store: DynStore) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(INDEX_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = store.index_search().await {
                tracing::warn!(error = %e, "search index upkeep failed; retrying");
            }
        }
    });
}

/// Indexes messages kept before search existed (an upgrade), in the background so
/// the server starts at once; they become findable as it goes.
pub(super) fn backfill_in_background(store: DynStore) {
    tokio::spawn(async move {
        let mut done = 0u64;
        loop {
            let rows = match store.unindexed_texts(1000).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "search backfill stopped; it resumes at the next start");
                    return;
                }
            };
            if rows.is_empty() {
                break;
            }
            for (room, seq, body) in rows {
                if let Err(e) = store.set_search_text(room, seq, &crate::domain::search::index_text(&body)).await {
                    tracing::warn!(error = %e, "search backfill stopped; it resumes at the next start");
                    return;
                }
                done += 1;
            }
        }
        if done > 0 {
            tracing::info!(messages = done, "search index backfilled");
        }
    });
}

/// Settings key: set once every kept message's search text is its words
/// (`domain::search::index_text`); older versions stored the folded text whole,
/// which PostgreSQL's and MariaDB's parsers split differently (`3.14`, `a_b`).
const REINDEXED_KEY: &str = "search_words_reindexed";
/// Settings key: how far the re-index got ("room:seq"), so a restart resumes there.
const REINDEX_CURSOR_KEY: &str = "search_words_cursor";
/// Messages a re-index step reads. After each step the re-index rests four times as
/// long as the step took (the search queue's work it causes comes on top), so chat
/// keeps most of the one writer: flat out, 500,000 messages took 94 s and a DM's
/// median latency went from 2 to 59 ms meanwhile (BENCHMARKS.md).
const REINDEX_BATCH: i64 = 100;
const REINDEX_REST: u32 = 4;
const REINDEX_MIN_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// Rewrites, in the background, the search text of messages stored by a version
/// that kept the folded text whole, so old messages match as new ones do on every
/// database. Runs once per database (a settings flag); messages stay findable
/// meanwhile (each row changes in place, never through "not indexed").
pub(super) fn reindex_in_background(store: DynStore) {
    tokio::spawn(async move {
        match reindex(&store).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(messages = n, "search words re-indexed"),
            Err(e) => tracing::warn!(error = %e, "search re-index stopped; it resumes at the next start"),
        }
    });
}

/// The search re-index's progress while it is pending on this database (any node may
/// be running it): (kept events it has passed, all of them; it walks them in key
/// order, reading the texts among them). `None` once done.
pub async fn reindex_progress(store: &DynStore) -> Result<Option<(i64, i64)>, crate::store::StoreError> {
    if store.get_setting(REINDEXED_KEY).await?.is_some() {
        return Ok(None);
    }
    Ok(Some(store.events_upto(reindex_cursor(store).await?).await?))
}

/// The last (room, seq) the re-index has passed, or before the first message.
async fn reindex_cursor(store: &DynStore) -> Result<(RoomId, Seq), crate::store::StoreError> {
    Ok(store
        .get_setting(REINDEX_CURSOR_KEY)
        .await?
        .and_then(|c| {
            let (room, seq) = c.split_once(':')?;
            Some((room.parse().ok()?, seq.parse().ok()?))
        })
        .unwrap_or((i64::MIN, i64::MIN)))
}

/// The re-index itself; returns how many messages changed. Public for tools that
/// build a database outside a server (rtm-bench's stored history): run on a database
/// with no messages yet, it only sets the flag, as a server's first start does.
pub async fn reindex(store: &DynStore) -> Result<u64, crate::store::StoreError> {
    if store.get_setting(REINDEXED_KEY).await?.is_some() {
        return Ok(0);
    }
    let mut after = reindex_cursor(store).await?;
    let mut changed = 0u64;
    loop {
        let step = std::time::Instant::now();
        let rows = store.search_texts_after(after, REINDEX_BATCH).await?;
        let Some(last) = rows.last() else { break };
        after = (last.0, last.1);
        let stale: Vec<_> = rows
            .into_iter()
            .filter_map(|(room, seq, body, old)| {
                // NULL: not indexed yet, the backfill's business.
                let new = crate::domain::search::index_text(&body);
                old.filter(|o| *o != new).map(|o| (room, seq, o, new))
            })
            .collect();
        changed += stale.len() as u64;
        store.replace_search_texts(&stale).await?;
        store.set_setting(REINDEX_CURSOR_KEY, &format!("{}:{}", after.0, after.1)).await?;
        tokio::time::sleep((step.elapsed() * REINDEX_REST).max(REINDEX_MIN_PAUSE)).await;
    }
    store.set_setting(REINDEXED_KEY, "1").await?;
    Ok(changed)
}
