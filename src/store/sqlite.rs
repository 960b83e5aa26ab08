//! The embedded default: SQLite in WAL mode (readers never wait for the writer), with a
//! busy timeout (the pool's writers queue instead of failing) and foreign keys on.
//! `synchronous=NORMAL` is the WAL setting SQLite recommends: a power cut may lose the
//! last commits but never corrupts the file.
//!
//! Writes go through ONE connection (see `SqlStore::writer`), which never checkpoints
//! the WAL itself; `Store::maintain` copies the WAL into the database from a read
//! connection, then copies the rest from the writer so the log starts over.

use std::path::Path;

use sqlx::{Executor, any::AnyPoolOptions};

use super::{
    StoreError, StoreResult,
    sql::{Backend, SqlStore},
};

pub async fn open(url: &str, pool_size: u32) -> StoreResult<SqlStore> {
    let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or(path);
    if let Some(dir) = Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
    }
    let url = if url.contains('?') { url.to_string() } else { format!("sqlite:{path}?mode=rwc") };
    let pool = options(pool_size.max(2), false).connect(&url).await?;
    sqlx::migrate!("migrations/sqlite").run(&pool).await?;
    let writer = options(1, true).connect(&url).await?;
    Ok(SqlStore { pool, writer, backend: Backend::Sqlite, held_dm_cap: Default::default() })
}

/// A pool of `n` connections, each set up by [`setup`].
fn options(n: u32, writer: bool) -> AnyPoolOptions {
    // No ping before handing out a connection: a file does not hang up, and the ping
    // is one more round trip to the connection's worker thread on every query.
    AnyPoolOptions::new()
        .max_connections(n)
        .test_before_acquire(false)
        .after_connect(move |conn, _meta| Box::pin(setup(conn, writer)))
}

async fn setup(conn: &mut sqlx::AnyConnection, writer: bool) -> Result<(), sqlx::Error> {
    conn.execute("PRAGMA journal_mode = WAL").await?;
    conn.execute("PRAGMA synchronous = NORMAL").await?;
    conn.execute("PRAGMA busy_timeout = 10000").await?;
    conn.execute("PRAGMA foreign_keys = ON").await?;
    if writer {
        // The writer never checkpoints on commit (that copy and its fsync would stall
        // every append behind it, the DM latency tail): `maintain` does it off the path.
        conn.execute("PRAGMA wal_autocheckpoint = 0").await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use sqlx::Executor;

    use super::open;

    fn wal_len(dir: &std::path::Path) -> u64 {
        std::fs::metadata(dir.join("t.db-wal")).map(|m| m.len()).unwrap_or(0)
    }

    #[tokio::test]
    async fn writer_leaves_the_wal_to_checkpoint_and_maintain() {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let store = open(&format!("sqlite:{}", dir.path().join("t.db").display()), 2).await.unwrap();
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
}
