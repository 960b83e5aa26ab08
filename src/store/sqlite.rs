//! The embedded default: SQLite in WAL mode (readers never wait for the writer), with a
//! busy timeout (the pool's writers queue instead of failing) and foreign keys on.
//! `synchronous=NORMAL` is the WAL setting SQLite recommends and our default: a power
//! cut may lose the last commits but never corrupts the file. `--durability full`
//! (`synchronous=FULL`) fsyncs the WAL at every commit, i.e. once per batch of messages.
//! [`backup`] copies a live database into a new file (`rtm backup`).
//!
//! Writes go through ONE connection (see `SqlStore::writer`), which never checkpoints
//! the WAL itself; `Store::maintain` copies the WAL into the database from a read
//! connection, then copies the rest from the writer so the log starts over.

use std::path::Path;

use sqlx::{Executor, Row, any::AnyPoolOptions};

use super::{
    StoreError, StoreResult,
    sql::{Backend, SqlStore},
};
pub use crate::config::Durability;

/// The file a `sqlite:` URL names (without its `?options`), or `None` for another
/// kind of URL. May be empty (`sqlite:`), or `:memory:`.
pub fn file_of(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    Some(rest.split('?').next().unwrap_or(rest))
}

pub async fn open(url: &str, pool_size: u32, durability: Durability) -> StoreResult<SqlStore> {
    let path = file_of(url).unwrap_or_default();
    if path.is_empty() {
        return Err(StoreError::Backend("the SQLite URL names no file (sqlite:/path/to/rtm.db)".into()));
    }
    if let Some(dir) = Path::new(path).parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        // A data dir we create is the server user's alone: the database holds password
        // hashes and SQLite makes its files readable by all (0644).
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
    }
    not_another_kind_of_file(path)?;
    let url = if url.contains('?') { url.to_string() } else { format!("sqlite:{path}?mode=rwc") };
    let pool = options(pool_size.max(2), false, durability).connect(&url).await?;
    sqlx::migrate!("migrations/sqlite").run(&pool).await?;
    let writer = options(1, true, durability).connect(&url).await?;
    Ok(SqlStore {
        pool,
        writer,
        backend: Backend::Sqlite,
        held_dm_cap: Default::default(),
        known: Default::default(),
        min_word_chars: 1,
        appends: Default::default(),
    })
}

/// A file that is there but is not a SQLite database (a wrong `--database` path) is
/// refused at once: otherwise every connection of the pool fails and retries until
/// its timeout, 30 s later. An empty file is a database SQLite has not written yet.
fn not_another_kind_of_file(path: &str) -> StoreResult<()> {
    use std::io::Read;
    let Ok(f) = std::fs::File::open(path) else {
        return Ok(()); // not there yet (created), or SQLite says why
    };
    let mut head = Vec::with_capacity(16);
    f.take(16).read_to_end(&mut head).map_err(|e| StoreError::Backend(format!("cannot read {path}: {e}")))?;
    if head.is_empty() || head == b"SQLite format 3\0" {
        Ok(())
    } else {
        Err(StoreError::Backend(format!("{path} is not a SQLite database")))
    }
}

/// A pool of `n` connections, each set up by [`setup`].
fn options(n: u32, writer: bool, durability: Durability) -> AnyPoolOptions {
    // No ping before handing out a connection: a file does not hang up, and the ping
    // is one more round trip to the connection's worker thread on every query.
    AnyPoolOptions::new()
        .max_connections(n)
        .test_before_acquire(false)
        .after_connect(move |conn, _meta| Box::pin(setup(conn, writer, durability)))
}

async fn setup(conn: &mut sqlx::AnyConnection, writer: bool, durability: Durability) -> Result<(), sqlx::Error> {
    conn.execute("PRAGMA journal_mode = WAL").await?;
    // Every connection: the readers run the checkpoints, and FULL makes those fsync too.
    conn.execute(match durability {
        Durability::Normal => "PRAGMA synchronous = NORMAL",
        Durability::Full => "PRAGMA synchronous = FULL",
    })
    .await?;
    conn.execute("PRAGMA busy_timeout = 10000").await?;
    conn.execute("PRAGMA foreign_keys = ON").await?;
    if writer {
        // The writer never checkpoints on commit (that copy and its fsync would stall
        // every append behind it, the DM latency tail): `maintain` does it off the path.
        conn.execute("PRAGMA wal_autocheckpoint = 0").await?;
        // A WAL that a burst grew past this is cut back to it when the log restarts
        // (the first commit after a complete checkpoint): smaller ones are reused.
        conn.execute("PRAGMA journal_size_limit = 67108864").await?;
    }
    Ok(())
}

/// Largest WAL kept for reuse after the log restarts (`journal_size_limit` in
/// [`setup`], which needs a literal: keep the two equal).
pub const WAL_LIMIT_BYTES: u64 = 64 << 20;
/// A WAL that no commit has touched for this long, and that a checkpoint copied
/// entirely, is truncated to nothing: a quiet server gives the space back, and its
/// next start has no log to read.
pub const WAL_QUIET: std::time::Duration = std::time::Duration::from_secs(10);

/// Housekeeping of the WAL (every tick, from `Store::maintain`): copy it into the
/// database (`SqlStore::checkpoint`), and at a quiet moment truncate it. Under load the
/// log is reused, never truncated: truncating and re-growing it stalled appends by
/// ~35 ms. Returns the log's frames and those copied, and whether it was truncated.
pub(crate) async fn maintain_wal(store: &SqlStore) -> StoreResult<(i64, i64, bool)> {
    maintain_wal_after(store, WAL_QUIET).await
}

/// [`maintain_wal`] with the quiet time as a parameter (tests).
async fn maintain_wal_after(store: &SqlStore, quiet: std::time::Duration) -> StoreResult<(i64, i64, bool)> {
    let (log, copied) = store.checkpoint().await?;
    if log == 0 || copied < log {
        return Ok((log, copied, false));
    }
    let file: String = store.q("PRAGMA database_list").fetch_one(&store.pool).await?.try_get("file")?;
    if file.is_empty() {
        return Ok((log, copied, false));
    }
    // Commits write the WAL; checkpoints only read it: its mtime is the last commit.
    let idle = std::fs::metadata(format!("{file}-wal"))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .unwrap_or_default();
    if idle < quiet {
        return Ok((log, copied, false));
    }
    // From the writer: nothing appends meanwhile. TRUNCATE waits (busy timeout) for
    // readers still on the log's pages; after 10 quiet seconds there are none.
    let row = store.q("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&store.writer).await?;
    let busy: i64 = row.try_get(0)?;
    if busy == 0 {
        tracing::debug!(frames = log, "quiet: WAL checkpointed and truncated");
    }
    Ok((log, copied, busy == 0))
}

/// Rows of the search queue applied in one transaction: long enough that FTS5 writes
/// one segment for many messages, short enough that an append waits at most a few
/// milliseconds for the writer.
pub const INDEX_CHUNK: i64 = 2000;

/// Transactions one [`index_search`] call runs at most, so a call ends under any load.
const INDEX_ROUNDS: usize = 64;

/// The ends of the search queue as they stand: the last removal queued, the highest
/// row queued.
const QUEUE_BOUNDS: &str =
    "SELECT (SELECT COALESCE(MAX(id), 0) FROM fts_dead) AS dead, (SELECT COALESCE(MAX(row), 0) FROM fts_todo) AS todo";

/// Indexes the queued rows up to a cut. CROSS JOIN keeps the queue as the outer loop:
/// with a plain JOIN the planner carried `t.row <= ?` over to `m.rowid` and walked every
/// message below the cut, looking each up in the queue. That was 82 ms of the one
/// writer's time a chunk at 318,400 messages, for a few dozen rows, and grew with every
/// message kept.
pub(crate) const INDEX_ROWS: &str = "INSERT INTO messages_fts (rowid, search_text)
    SELECT m.rowid, m.search_text FROM fts_todo t CROSS JOIN messages m ON m.rowid = t.row
     WHERE t.row <= ? AND m.search_text IS NOT NULL";

/// Applies the search queue (migration 0008) as it stands: every queued removal,
/// then every queued row, in transactions of at most [`INDEX_CHUNK`] rows (at most
/// [`INDEX_ROUNDS`] of them a call). Returns the rows applied. Called every 250 ms by
/// the server's upkeep and before a search.
///
/// Each transaction reads the queue's ends inside itself. Read before it, they let a
/// row's new text be indexed before the removal of its old one, queued meanwhile (a
/// re-index or an edit between the read and the transaction), was applied: the row was
/// then indexed twice, and the removal that came after took both out, so the message
/// could no longer be found by its words.
pub(crate) async fn index_search(store: &SqlStore) -> StoreResult<u64> {
    let bounds = store
        .q(QUEUE_BOUNDS)
        // A read connection: an empty queue (the usual case before a search when
        // nothing was sent since the last tick) costs no turn of the one writer.
        .fetch_one(&store.pool)
        .await?;
    let (dead_max, todo_max): (i64, i64) = (bounds.try_get("dead")?, bounds.try_get("todo")?);
    if dead_max == 0 && todo_max == 0 {
        return Ok(0);
    }
    let mut applied = 0u64;
    for _ in 0..INDEX_ROUNDS {
        let mut tx = store.begin_write().await?;
        let bounds = store.q(QUEUE_BOUNDS).fetch_one(&mut *tx).await?;
        let (dead_max, todo_max): (i64, i64) = (bounds.try_get("dead")?, bounds.try_get("todo")?);
        // Removals first, in the order they were queued: a rowid reused by a new row
        // must lose its old words before it gets its new ones.
        let (dead, cut) = take(
            &mut tx,
            store,
            "SELECT id AS k FROM fts_dead WHERE id <= ? ORDER BY id LIMIT ?",
            dead_max,
            INDEX_CHUNK,
        )
        .await?;
        if dead > 0 {
            store
                .q("INSERT INTO messages_fts (messages_fts, rowid, search_text)
                    SELECT 'delete', row, text FROM fts_dead WHERE id <= ? ORDER BY id")
                .bind(cut)
                .execute(&mut *tx)
                .await?;
            store.q("DELETE FROM fts_dead WHERE id <= ?").bind(cut).execute(&mut *tx).await?;
        }
        // Rows only once every removal queued before them is applied.
        let mut todo = 0;
        if dead < INDEX_CHUNK {
            let (n, cut) = take(
                &mut tx,
                store,
                "SELECT row AS k FROM fts_todo WHERE row <= ? ORDER BY row LIMIT ?",
                todo_max,
                INDEX_CHUNK - dead,
            )
            .await?;
            if n > 0 {
                store.q(INDEX_ROWS).bind(cut).execute(&mut *tx).await?;
                store.q("DELETE FROM fts_todo WHERE row <= ?").bind(cut).execute(&mut *tx).await?;
            }
            todo = n;
        }
        tx.commit().await?;
        applied += (dead + todo) as u64;
        // A transaction that did not fill its chunk emptied both queues.
        if dead + todo < INDEX_CHUNK {
            break;
        }
    }
    Ok(applied)
}

/// How many keys `sql` (`k`, at most `limit` of them up to `max`) selects, and the
/// largest.
async fn take(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    store: &SqlStore,
    sql: &str,
    max: i64,
    limit: i64,
) -> StoreResult<(i64, i64)> {
    let row = store
        .q(format!("SELECT COUNT(*) AS n, COALESCE(MAX(k), 0) AS cut FROM ({sql})"))
        .bind(max)
        .bind(limit)
        .fetch_one(&mut **tx)
        .await?;
    Ok((row.try_get("n")?, row.try_get("cut")?))
}

/// Copies the live database at `url` into a new file `dest` (`rtm backup`): one
/// consistent snapshot taken by `VACUUM INTO` inside a read transaction, so a running
/// server keeps writing meanwhile (WAL: readers do not block the writer). The copy is
/// a complete database on its own (no WAL beside it), compacted; it is written to
/// `dest.partial` and renamed when complete, so `dest` is never a half copy.
pub async fn backup(url: &str, dest: &Path) -> StoreResult<()> {
    use sqlx::Connection;
    let path = file_of(url).unwrap_or_default();
    if !Path::new(path).exists() {
        return Err(StoreError::Backend(format!("no database at {path}")));
    }
    if dest.exists() {
        return Err(StoreError::Backend(format!("{} exists already: name a new file", dest.display())));
    }
    sqlx::any::install_default_drivers();
    let mut partial = dest.as_os_str().to_owned();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    let _ = std::fs::remove_file(&partial);
    // The copy holds password hashes: created empty, readable by its owner only, and
    // VACUUM INTO fills it (it takes an empty file).
    let mut create = std::fs::OpenOptions::new();
    create.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut create, 0o600);
    create.open(&partial).map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", partial.display())))?;
    // Read-write: a reader of a WAL database needs the -shm index, which only a
    // writable connection may create; nothing is written to the source.
    let mut conn = sqlx::AnyConnection::connect(&format!("sqlite:{path}?mode=rw")).await?;
    conn.execute("PRAGMA busy_timeout = 10000").await?;
    let target = partial.to_str().ok_or_else(|| StoreError::Backend("the backup path is not UTF-8".into()))?;
    sqlx::query("VACUUM INTO $1").bind(target).execute(&mut conn).await?;
    conn.close().await?;
    // The copy's own check before it takes the final name.
    let mut copy = sqlx::AnyConnection::connect(&format!("sqlite:{target}?mode=ro")).await?;
    let verdict: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&mut copy).await?;
    copy.close().await?;
    if verdict != "ok" {
        return Err(StoreError::Backend(format!("the copy failed its integrity check: {verdict}")));
    }
    std::fs::rename(&partial, dest)
        .map_err(|e| StoreError::Backend(format!("cannot rename {} to {}: {e}", partial.display(), dest.display())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use sqlx::Executor;

    use super::{WAL_LIMIT_BYTES, index_search, maintain_wal, maintain_wal_after, open};

    /// A store on `t.db` in a new temporary directory (kept alive by the caller).
    async fn temp_store() -> (tempfile::TempDir, super::SqlStore) {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let store =
            open(&format!("sqlite:{}", dir.path().join("t.db").display()), 2, super::Durability::Normal).await.unwrap();
        (dir, store)
    }

    fn wal_len(dir: &std::path::Path) -> u64 {
        std::fs::metadata(dir.join("t.db-wal")).map(|m| m.len()).unwrap_or(0)
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_database_is_refused_at_once() {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, b"garbage, not a database").unwrap();
        let Err(e) = open(&format!("sqlite:{}", junk.display()), 2, super::Durability::Normal).await else {
            panic!("a file of junk opened as a database")
        };
        // Said at once, not a pool timeout after 30 s of retries.
        assert!(e.to_string().contains("is not a SQLite database"), "{e}");
        assert!(open("sqlite:", 2, super::Durability::Normal).await.is_err());
        // An empty file is a database not written yet.
        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, b"").unwrap();
        open(&format!("sqlite:{}", empty.display()), 2, super::Durability::Normal).await.unwrap();
    }

    #[tokio::test]
    async fn a_data_dir_it_creates_is_its_owners_alone() {
        use std::os::unix::fs::PermissionsExt;
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("new").join("data");
        open(&format!("sqlite:{}", data.join("rtm.db").display()), 2, super::Durability::Normal).await.unwrap();
        let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{mode:o}");
    }

    #[tokio::test]
    async fn durability_sets_synchronous_on_every_connection() {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        for (durability, level) in [(super::Durability::Normal, 1i64), (super::Durability::Full, 2)] {
            let url = format!("sqlite:{}", dir.path().join(format!("{durability:?}.db")).display());
            let store = open(&url, 2, durability).await.unwrap();
            let w: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&store.writer).await.unwrap();
            let r: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&store.pool).await.unwrap();
            assert_eq!((w, r), (level, level), "{durability:?}");
        }
    }

    #[tokio::test]
    async fn a_backup_is_a_complete_database_and_never_overwrites() {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("live.db").display());
        let store = open(&url, 2, super::Durability::Normal).await.unwrap();
        store.writer.execute("CREATE TABLE t (x INTEGER)").await.unwrap();
        sqlx::query("INSERT INTO t VALUES (42)").execute(&store.writer).await.unwrap();
        let dest = dir.path().join("copy.db");
        super::backup(&url, &dest).await.unwrap();
        // Only the file itself: no WAL beside it, nothing left half-written.
        assert!(!dir.path().join("copy.db-wal").exists());
        assert!(!dir.path().join("copy.db.partial").exists());
        let copy = open(&format!("sqlite:{}", dest.display()), 2, super::Durability::Normal).await.unwrap();
        let x: i64 = sqlx::query_scalar("SELECT x FROM t").fetch_one(&copy.pool).await.unwrap();
        assert_eq!(x, 42);
        let err = super::backup(&url, &dest).await.unwrap_err();
        assert!(err.to_string().contains("exists already"), "{err}");
        let missing = format!("sqlite:{}", dir.path().join("nope.db").display());
        assert!(super::backup(&missing, &dir.path().join("x.db")).await.is_err());
    }

    /// `EXPLAIN QUERY PLAN` of `sql`, one line a step.
    async fn plan(store: &super::SqlStore, sql: &str) -> Vec<String> {
        let rows = store.q(format!("EXPLAIN QUERY PLAN {sql}")).fetch_all(&store.writer).await.unwrap();
        rows.iter().map(|r| sqlx::Row::get::<String, _>(r, "detail")).collect()
    }

    /// The upkeep's statements (every 2 s, the first two on the one writer) reach their
    /// rows by an index: a walk of the table costs more with every message or account
    /// kept, and on the writer holds up every send meanwhile.
    #[tokio::test]
    async fn upkeep_reaches_messages_by_key_not_by_walking_them() {
        let (_dir, store) = temp_store().await;
        let index = plan(&store, super::INDEX_ROWS).await;
        let on_messages: Vec<&String> = index.iter().filter(|l| l.contains(" m ") || l.ends_with(" m")).collect();
        assert!(
            !on_messages.is_empty() && on_messages.iter().all(|l| l.contains("(rowid=?)")),
            "the search queue's rows must find their messages by rowid: {index:?}"
        );
        let prune = plan(&store, crate::store::sql::PRUNE_EXPIRED).await;
        assert!(
            prune.iter().any(|l| l.contains("messages USING INDEX messages_created"))
                && !prune.iter().any(|l| l.starts_with("SCAN messages")),
            "the keep-days sweep must take only the old messages from their index: {prune:?}"
        );
        // And what it asks of the accounts and sessions every 2 s.
        for (sql, index) in [
            (crate::store::sql::DISABLED_IDS, "users_disabled"),
            (crate::store::sql::EXPIRED_SESSIONS, "sessions_expires"),
        ] {
            let p = plan(&store, sql).await;
            // SEARCH, not SCAN: a walk of the whole index is a walk all the same.
            assert!(!p.is_empty() && p.iter().all(|l| l.starts_with("SEARCH") && l.contains(index)), "{sql}: {p:?}");
        }
    }

    #[tokio::test]
    async fn writer_leaves_the_wal_to_checkpoint_and_maintain() {
        let (dir, store) = temp_store().await;
        store.writer.execute("CREATE TABLE t (x BLOB)").await.unwrap();
        // ~2,500 pages in many commits: SQLite's default would have checkpointed (and
        // restarted the log) after 1,000.
        for _ in 0..50 {
            sqlx::query("INSERT INTO t VALUES (randomblob(200000))").execute(&store.writer).await.unwrap();
        }
        let before = wal_len(dir.path());
        assert!(before > 2000 * 4096, "the writer must not checkpoint on commit (WAL {before} bytes)");

        // The checkpoint copies everything (nothing else is writing)...
        let (log, copied) = store.checkpoint().await.unwrap();
        assert!(log > 2000, "{log}");
        assert_eq!(copied, log);
        // ...so the next commit starts the log again from its beginning: the file
        // stays the size it was, and holds only that commit's pages.
        sqlx::query("INSERT INTO t VALUES (x'00')").execute(&store.writer).await.unwrap();
        assert_eq!(wal_len(dir.path()), before);
        let (log, copied) = store.checkpoint().await.unwrap();
        assert!(log < 10, "the log restarted: {log} frames");
        assert_eq!(copied, log);

        // Housekeeping's entry point does the same: after more commits and one
        // `maintain`, the next commit starts the log over again.
        for _ in 0..10 {
            sqlx::query("INSERT INTO t VALUES (randomblob(200000))").execute(&store.writer).await.unwrap();
        }
        crate::store::Store::maintain(&store).await.unwrap();
        sqlx::query("INSERT INTO t VALUES (x'00')").execute(&store.writer).await.unwrap();
        let (log, copied) = store.checkpoint().await.unwrap();
        assert!(log < 10, "maintain left the log to restart: {log} frames");
        assert_eq!(copied, log);
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t").fetch_one(&store.pool).await.unwrap();
        assert_eq!(n, 62);
    }

    #[tokio::test]
    async fn the_wal_is_bounded_under_load_and_truncated_when_quiet() {
        let (dir, store) = temp_store().await;
        store.writer.execute("CREATE TABLE t (x BLOB)").await.unwrap();
        // A burst of ~80 MiB between two checkpoints grows the log past the limit...
        for _ in 0..400 {
            sqlx::query("INSERT INTO t VALUES (randomblob(200000))").execute(&store.writer).await.unwrap();
        }
        assert!(wal_len(dir.path()) > WAL_LIMIT_BYTES);
        // ...a busy tick copies it but leaves it (it was written just now)...
        let (log, copied, truncated) = maintain_wal(&store).await.unwrap();
        assert!(log > 0 && copied == log && !truncated);
        // ...and the next commit restarts the log, cut back to the limit.
        sqlx::query("INSERT INTO t VALUES (x'00')").execute(&store.writer).await.unwrap();
        let after = wal_len(dir.path());
        assert!(after <= WAL_LIMIT_BYTES, "WAL {after} bytes after the restart");
        assert!(after > 0, "below the limit the log is reused, not truncated");
        // Quiet (no commit for the quiet time): the log is copied and truncated.
        let (_, _, truncated) = maintain_wal_after(&store, std::time::Duration::ZERO).await.unwrap();
        assert!(truncated);
        assert_eq!(wal_len(dir.path()), 0);
        // Nothing was lost, and writing goes on.
        sqlx::query("INSERT INTO t VALUES (x'01')").execute(&store.writer).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t").fetch_one(&store.pool).await.unwrap();
        assert_eq!(n, 402);
        // An empty log is left alone.
        maintain_wal_after(&store, std::time::Duration::ZERO).await.unwrap();
        let (log, _, truncated) = maintain_wal_after(&store, std::time::Duration::ZERO).await.unwrap();
        assert!(log == 0 && !truncated);
    }

    /// Every word instance in the search index equals those of an index built afresh
    /// from the messages' current texts (FTS5's own 'integrity-check' with the content
    /// table counts rows without text as missing, so it cannot be used here).
    async fn assert_index_matches(store: &super::SqlStore) {
        let w = &store.writer;
        w.execute(
            "DROP TABLE IF EXISTS fresh_fts; DROP TABLE IF EXISTS fresh_words; DROP TABLE IF EXISTS kept_words;
             CREATE VIRTUAL TABLE fresh_fts USING fts5(search_text, tokenize = 'unicode61 remove_diacritics 0');
             INSERT INTO fresh_fts (rowid, search_text) SELECT rowid, search_text FROM messages WHERE search_text IS NOT NULL;
             CREATE VIRTUAL TABLE fresh_words USING fts5vocab(fresh_fts, 'instance');
             CREATE VIRTUAL TABLE kept_words USING fts5vocab(messages_fts, 'instance');",
        )
        .await
        .unwrap();
        let differ: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM (SELECT term, doc, offset FROM kept_words EXCEPT SELECT term, doc, offset FROM fresh_words))
                  + (SELECT COUNT(*) FROM (SELECT term, doc, offset FROM fresh_words EXCEPT SELECT term, doc, offset FROM kept_words))",
        )
        .fetch_one(w)
        .await
        .unwrap();
        let words: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM kept_words").fetch_one(w).await.unwrap();
        assert!(words > 0);
        assert_eq!(differ, 0, "the index differs from the messages in {differ} word instances (of {words})");
        w.execute("DROP TABLE kept_words; DROP TABLE fresh_words; DROP TABLE fresh_fts;").await.unwrap();
    }

    /// The seqs whose indexed words match `word`, read as a search reads them.
    async fn found(store: &super::SqlStore, word: &str) -> Vec<i64> {
        sqlx::query_scalar(
            "SELECT m.seq FROM messages_fts f JOIN messages m ON m.rowid = f.rowid WHERE messages_fts MATCH $1 ORDER BY m.seq",
        )
        .bind(word.to_string())
        .fetch_all(&store.pool)
        .await
        .unwrap()
    }

    /// The search queue (migration 0008) against every way a row changes before and
    /// after it is indexed; after each stage the index must hold exactly the words of
    /// the messages' current texts.
    #[tokio::test]
    async fn the_search_queue_keeps_the_index_equal_to_the_messages() {
        let (_dir, store) = temp_store().await;
        let w = &store.writer;
        w.execute("INSERT INTO rooms (id, kind, name, name_lc, created_at) VALUES (1, 'room', 'r', 'r', 0)")
            .await
            .unwrap();
        let put = |seq: i64, text: &str| {
            sqlx::query(
                "INSERT INTO messages (room_id, seq, author_id, kind, body, created_at, search_text) VALUES (1, $1, 1, 'text', $2, 0, $2)",
            )
            .bind(seq)
            .bind(text.to_string())
        };
        for (seq, text) in [(1, "alpha one"), (2, "bravo two"), (3, "charlie three"), (4, "delta four")] {
            put(seq, text).execute(w).await.unwrap();
        }
        // Queued, not yet indexed; then applied.
        assert!(found(&store, "alpha").await.is_empty());
        assert_eq!(index_search(&store).await.unwrap(), 4);
        assert_eq!(found(&store, "alpha").await, vec![1]);
        assert_eq!(index_search(&store).await.unwrap(), 0, "nothing left");
        assert_index_matches(&store).await;

        // An indexed row edited, another deleted, another's text removed (a deleted
        // message); a new row edited twice and one deleted before being indexed.
        sqlx::query("UPDATE messages SET search_text = 'alpha edited' WHERE seq = 1").execute(w).await.unwrap();
        sqlx::query("DELETE FROM messages WHERE seq = 2").execute(w).await.unwrap();
        sqlx::query("UPDATE messages SET search_text = NULL WHERE seq = 3").execute(w).await.unwrap();
        put(5, "echo five").execute(w).await.unwrap();
        sqlx::query("UPDATE messages SET search_text = 'echo again' WHERE seq = 5").execute(w).await.unwrap();
        sqlx::query("UPDATE messages SET search_text = 'echo final' WHERE seq = 5").execute(w).await.unwrap();
        put(6, "foxtrot six").execute(w).await.unwrap();
        sqlx::query("DELETE FROM messages WHERE seq = 6").execute(w).await.unwrap();
        index_search(&store).await.unwrap();
        assert_eq!(found(&store, "one").await, Vec::<i64>::new());
        assert_eq!(found(&store, "edited").await, vec![1]);
        assert!(found(&store, "bravo").await.is_empty() && found(&store, "charlie").await.is_empty());
        assert_eq!(found(&store, "echo").await, vec![5]);
        assert!(found(&store, "again").await.is_empty() && found(&store, "foxtrot").await.is_empty());
        assert_index_matches(&store).await;

        // The newest row deleted after indexing, and its rowid reused by a new row:
        // the old words go before the new ones come.
        let old: i64 = sqlx::query_scalar("SELECT rowid FROM messages WHERE seq = 5").fetch_one(w).await.unwrap();
        sqlx::query("DELETE FROM messages WHERE seq = 5").execute(w).await.unwrap();
        put(7, "golf seven echo").execute(w).await.unwrap();
        let new: i64 = sqlx::query_scalar("SELECT rowid FROM messages WHERE seq = 7").fetch_one(w).await.unwrap();
        assert_eq!(old, new, "SQLite reuses the largest rowid once it is gone");
        index_search(&store).await.unwrap();
        assert_eq!(found(&store, "echo").await, vec![7]);
        assert!(found(&store, "final").await.is_empty());
        assert_eq!(found(&store, "golf").await, vec![7]);
        assert_index_matches(&store).await;

        // More than a chunk, half of it trimmed before indexing, the rest after.
        let n = super::INDEX_CHUNK * 2 + 5;
        for seq in 100..100 + n {
            put(seq, &format!("bulk w{seq}")).execute(w).await.unwrap();
        }
        sqlx::query("DELETE FROM messages WHERE seq >= 100 AND seq < $1").bind(100 + n / 2).execute(w).await.unwrap();
        assert_eq!(index_search(&store).await.unwrap() as i64, n - n / 2);
        sqlx::query("DELETE FROM messages WHERE seq >= $1 AND seq < $2")
            .bind(100 + n / 2)
            .bind(100 + n - 10)
            .execute(w)
            .await
            .unwrap();
        index_search(&store).await.unwrap();
        assert_eq!(found(&store, "bulk").await.len(), 10);

        let queued: i64 =
            sqlx::query_scalar("SELECT (SELECT COUNT(*) FROM fts_todo) + (SELECT COUNT(*) FROM fts_dead)")
                .fetch_one(w)
                .await
                .unwrap();
        assert_eq!(queued, 0);
        assert_index_matches(&store).await;
    }

    /// The SQLite fast append (`sqlite_append.rs`: two calls for a room not known yet,
    /// one for a known room) gives the answers and leaves the rows the general path
    /// would: seqs per room in batch order, retries within the batch and of stored
    /// messages as duplicates (the call turns back to the general path with nothing
    /// half-written), every "keep the last N" rule, and a room that is gone as not
    /// found; a room changed by another writer is caught, never trimmed by stale
    /// knowledge.
    #[tokio::test]
    async fn the_fast_append_answers_and_trims_like_the_general_path() {
        use crate::{
            domain::MessageKind,
            store::{Appended, NewMessage, Store, StoreError},
        };
        let (_dir, store) = temp_store().await;
        let w = &store.writer;
        w.execute(
            "INSERT INTO users (id, email, email_lc, username, username_lc, first_name, last_name, password_hash, created_at)
             VALUES (1, 'a', 'a', 'a', 'a', 'f', 'l', 'x', 0), (2, 'b', 'b', 'b', 'b', 'f', 'l', 'x', 0)",
        )
        .await
        .unwrap();
        // 1: keep 2; 2: keep everything; 3 and 4: DMs keeping 2 (what is unread stays).
        w.execute(
            "INSERT INTO rooms (id, kind, name, name_lc, keep_messages, created_at) VALUES (1, 'room', 'a', 'a', 2, 0), (2, 'room', 'b', 'b', NULL, 0);
             INSERT INTO rooms (id, kind, dm_key, keep_messages, created_at) VALUES (3, 'dm', '1:2', 2, 0), (4, 'dm', '1:2b', 2, 0);
             INSERT INTO memberships (room_id, user_id, joined_at) VALUES (3, 1, 0), (3, 2, 0), (4, 1, 0), (4, 2, 0)",
        )
        .await
        .unwrap();
        let m = |room: i64, cid: &str| NewMessage {
            client_id: Some(cid.to_string()),
            ..NewMessage::plain(room, 1, MessageKind::Text, format!("text {cid}"), 0)
        };
        let pool = &store.pool;
        let seqs = |room: i64| {
            sqlx::query_scalar::<_, i64>("SELECT seq FROM messages WHERE room_id = $1 ORDER BY seq")
                .bind(room)
                .fetch_all(pool)
        };
        let last = |room: i64| {
            sqlx::query_scalar::<_, i64>("SELECT last_seq FROM rooms WHERE id = $1").bind(room).fetch_one(pool)
        };

        // The fast path itself (`append` takes it for these batches; None: it turned
        // back to the general path).
        let st = &store;
        let fast = |batch: Vec<NewMessage>| async move { st.append_plain_sqlite(&batch).await.unwrap() };
        assert!(store.known.lock().is_empty());
        let got = fast(vec![m(1, "a"), m(2, "b"), m(1, "c"), m(1, "a")]).await;
        assert_eq!(got, Some(vec![Appended::New(1), Appended::New(1), Appended::New(2), Appended::Duplicate(1)]));
        assert_eq!(seqs(1).await.unwrap(), [1, 2]);

        // A retry of a stored message beside new ones (known rooms: one call): the
        // unique index turns the call back, and the general path answers.
        assert_eq!(fast(vec![m(1, "d"), m(2, "b")]).await, None);
        let got = store.append(&[m(1, "d"), m(2, "b"), m(1, "e")]).await.unwrap();
        assert_eq!(got, [Appended::New(3), Appended::Duplicate(1), Appended::New(4)]);
        assert_eq!(
            (seqs(1).await.unwrap(), last(1).await.unwrap()),
            (vec![3, 4], 4),
            "the last 2, and no seq taken twice"
        );
        assert_eq!(
            (seqs(2).await.unwrap(), last(2).await.unwrap()),
            (vec![1], 1),
            "nothing of the refused call was kept"
        );
        let got = fast(vec![m(1, "f")]).await;
        assert_eq!((got, seqs(1).await.unwrap()), (Some(vec![Appended::New(5)]), vec![4, 5]));

        // A DM keeps what its recipient has not read, and trims to the last 2 of the rest.
        for k in 0..4 {
            assert!(fast(vec![m(3, &format!("dm{k}"))]).await.is_some());
        }
        assert_eq!(seqs(3).await.unwrap(), [1, 2, 3, 4], "held: user 2 has read nothing");
        assert_eq!(store.mark_read(3, 2, 3, true).await.unwrap(), 3);
        assert_eq!(seqs(3).await.unwrap(), [3, 4], "the read trims at once what it made deletable: 1 and 2");
        assert!(fast(vec![m(3, "dm4")]).await.is_some());
        assert_eq!(seqs(3).await.unwrap(), [4, 5], "up to seq 3 was read: the last 2 stay");

        // Past the cap on held messages the oldest go, read or not; other rooms are
        // not touched by it.
        store.set_max_held_dms(3);
        for k in 0..5 {
            assert!(fast(vec![m(4, &format!("held{k}"))]).await.is_some());
        }
        assert_eq!(seqs(4).await.unwrap(), [3, 4, 5]);
        assert!(fast(vec![m(2, "g")]).await.is_some());
        assert_eq!(seqs(2).await.unwrap(), [1, 2]);

        // What another writer changes (a policy, a seq moved by the general path of
        // another process) is caught inside the transaction: the one call turns back,
        // the general path appends, and the room is known again afterwards.
        assert!(store.known.lock().contains_key(&1), "room 1 is known: one call");
        w.execute("UPDATE rooms SET keep_messages = 3 WHERE id = 1").await.unwrap();
        assert_eq!(fast(vec![m(1, "h")]).await, None);
        assert!(!store.known.lock().contains_key(&1), "forgotten after a failed prediction");
        assert_eq!(seqs(1).await.unwrap(), [4, 5], "nothing of the refused call was kept");
        assert_eq!(store.append(&[m(1, "h")]).await.unwrap(), [Appended::New(6)]);
        assert_eq!(seqs(1).await.unwrap(), [4, 5, 6], "the new policy (the last 3), not the stale one");
        assert_eq!(fast(vec![m(1, "i")]).await, Some(vec![Appended::New(7)]));
        assert_eq!(seqs(1).await.unwrap(), [5, 6, 7]);
        w.execute("UPDATE rooms SET last_seq = last_seq + 10 WHERE id = 2").await.unwrap();
        assert_eq!(fast(vec![m(2, "j")]).await, None);
        assert_eq!(store.append(&[m(2, "j")]).await.unwrap(), [Appended::New(13)]);

        assert!(matches!(store.append_plain_sqlite(&[m(99, "x")]).await, Err(StoreError::NotFound)));
        assert!(store.known.lock().contains_key(&2));
        w.execute("DELETE FROM rooms WHERE id = 2").await.unwrap();
        assert_eq!(fast(vec![m(2, "k")]).await, None, "a known room that is gone turns back");
        assert!(matches!(store.append(&[m(2, "k")]).await, Err(StoreError::NotFound)));
        assert!(matches!(store.append(&[m(99, "x")]).await, Err(StoreError::NotFound)));
        assert_eq!(seqs(1).await.unwrap(), [5, 6, 7]);
    }

    /// Users 1 (ann) and 2 (bob), for the DM tests.
    const ANN_AND_BOB: &str =
        "INSERT INTO users (id, email, email_lc, username, username_lc, first_name, last_name, password_hash, created_at)
           VALUES (1, 'a@x', 'a@x', 'ann', 'ann', 'A', 'A', 'x', 0), (2, 'b@x', 'b@x', 'bob', 'bob', 'B', 'B', 'x', 0)";

    /// A DM's trims are ranges of the primary key over one step: the seqs a send's cut
    /// passes, or those a read marks read. None walks the messages held for a
    /// recipient who has not read them (by seq alone, with the read bound asked per
    /// row from seq 0, every send walked all of them: 2 ms of the writer at 4,000
    /// held; BENCHMARKS.md round 15), and no index of their own is kept for them.
    #[tokio::test]
    async fn dm_trims_are_ranges_of_one_step() {
        use sqlx::Row;
        let (_dir, store) = temp_store().await;
        store.writer.execute(ANN_AND_BOB).await.unwrap();
        store
            .writer
            .execute(
                "INSERT INTO rooms (id, kind, dm_key, keep_messages, created_at) VALUES (3, 'dm', '1:2', 2, 0);
                 INSERT INTO memberships (room_id, user_id, joined_at) VALUES (3, 1, 0), (3, 2, 0)",
            )
            .await
            .unwrap();
        let trims = store.dm_trims(3, 300, 1, 2);
        assert_eq!(trims.len(), 1, "one for both authors (no held-DM cap here)");
        for q in trims.into_iter().chain([store.read_trim(3, 2, 250)]) {
            let plan: Vec<String> = q
                .explained("EXPLAIN QUERY PLAN")
                .fetch_all(&store.pool)
                .await
                .unwrap()
                .iter()
                .map(|r| r.try_get::<String, _>("detail").unwrap())
                .collect();
            let on_messages: Vec<&String> = plan.iter().filter(|d| d.contains(" messages ")).collect();
            assert_eq!(
                on_messages,
                ["SEARCH messages USING INDEX sqlite_autoindex_messages_1 (room_id=? AND seq>? AND seq<?)"],
                "{plan:?}"
            );
        }
        let indexes: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages'")
                .fetch_all(&store.pool)
                .await
                .unwrap();
        assert!(!indexes.iter().any(|n| n == "messages_author_seq"), "{indexes:?}");
    }

    /// A write call dropped midway (its task cancelled after BEGIN) leaves no
    /// transaction open on the one writer: its connection is closed, which rolls back
    /// what it began, and the next write starts afresh. Returned to the pool inside
    /// the transaction, the next BEGIN failed.
    #[tokio::test]
    async fn a_write_call_dropped_midway_leaves_no_transaction_open() {
        use crate::store::sql::Writing;
        let (_dir, store) = temp_store().await;
        store.writer.execute("CREATE TABLE t (x INTEGER)").await.unwrap();
        {
            let mut w = Writing::acquire(&store.writer).await.unwrap();
            (&mut *w).execute("BEGIN IMMEDIATE; INSERT INTO t VALUES (1)").await.unwrap();
            // Dropped here, never settled: as a cancelled call.
        }
        store.writer.execute("BEGIN IMMEDIATE; INSERT INTO t VALUES (2); COMMIT").await.unwrap();
        let xs: Vec<i64> = sqlx::query_scalar("SELECT x FROM t").fetch_all(&store.pool).await.unwrap();
        assert_eq!(xs, [2]);
        let mut w = Writing::acquire(&store.writer).await.unwrap();
        (&mut *w).execute("INSERT INTO t VALUES (3)").await.unwrap();
        w.settle();
    }

    /// Before SQLite trimmed DMs at reads, what a read made deletable stayed until the
    /// next send; the trims at send now only look at their step. The upgrade deletes
    /// those messages once, and nothing held: ann's 1, 2 and 4 (bob has read to 4, the
    /// cut is 4), not her 5 (past the cut) nor bob's (ann has read nothing), nor a
    /// room's 3 (rooms are trimmed by the cut alone, at send).
    #[tokio::test]
    async fn upgrade_trims_what_reads_made_deletable() {
        let (_dir, store) = temp_store().await;
        store.writer.execute(ANN_AND_BOB).await.unwrap();
        store
            .writer
            .execute(
                "INSERT INTO rooms (id, kind, dm_key, keep_messages, last_seq, created_at) VALUES (3, 'dm', '1:2', 2, 6, 0);
                 INSERT INTO rooms (id, kind, name, name_lc, keep_messages, last_seq, created_at) VALUES (4, 'room', 'r', 'r', 2, 6, 0);
                 INSERT INTO memberships (room_id, user_id, joined_at, last_read_seq) VALUES (3, 1, 0, 0), (3, 2, 0, 4), (4, 1, 0, 0), (4, 2, 0, 6);
                 INSERT INTO messages (room_id, seq, author_id, kind, body, created_at) VALUES
                   (3, 1, 1, 'text', 'a', 0), (3, 2, 1, 'text', 'a', 0), (3, 3, 2, 'text', 'b', 0),
                   (3, 4, 1, 'text', 'a', 0), (3, 5, 1, 'text', 'a', 0), (3, 6, 2, 'text', 'b', 0),
                   (4, 3, 1, 'text', 'a', 0), (4, 6, 1, 'text', 'a', 0);
                 CREATE INDEX messages_author_seq ON messages (room_id, author_id, seq)",
            )
            .await
            .unwrap();
        store.writer.execute(include_str!("../../migrations/sqlite/0012_dm_trim_at_read.sql")).await.unwrap();
        let kept: Vec<(i64, i64)> = sqlx::query_as("SELECT room_id, seq FROM messages ORDER BY room_id, seq")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        assert_eq!(kept, [(3, 3), (3, 5), (3, 6), (4, 3), (4, 6)]);
    }

    /// Rows written before the search folds existed (an upgrade: inserted here without
    /// them) are found by any case once the store has opened again and filled them in.
    #[tokio::test]
    async fn rows_of_an_older_version_get_their_search_folds() {
        use crate::store::Store;
        let (dir, store) = temp_store().await;
        store
            .writer
            .execute(
                "INSERT INTO users (id, email, email_lc, username, username_lc, first_name, last_name, password_hash, created_at)
                 VALUES (1, 'e@x', 'e@x', 'ez', 'ez', 'Émile', 'Zola', 'x', 0);
                 INSERT INTO rooms (id, kind, name, name_lc, topic, created_at) VALUES (1, 'room', 'r', 'r', 'ÉTÉ', 0)",
            )
            .await
            .unwrap();
        let names = |users: Vec<crate::store::User>| users.into_iter().map(|u| u.username).collect::<Vec<_>>();
        // Before: SQLite's lower() leaves É as it is.
        assert!(store.list_users(Some("émile"), 10, false).await.unwrap().is_empty());
        drop(store);
        let store =
            open(&format!("sqlite:{}", dir.path().join("t.db").display()), 2, super::Durability::Normal).await.unwrap();
        store.fill_search_folds().await.unwrap();
        assert_eq!(names(store.list_users(Some("émile"), 10, false).await.unwrap()), ["ez"]);
        assert_eq!(store.search_rooms(1, Some("été"), 10).await.unwrap().len(), 1);
    }
}
