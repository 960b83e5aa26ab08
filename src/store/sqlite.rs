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

use sqlx::{Executor, any::AnyPoolOptions};

use super::{
    StoreError, StoreResult,
    sql::{Backend, SqlStore},
};
pub use crate::config::Durability;

pub async fn open(url: &str, pool_size: u32, durability: Durability) -> StoreResult<SqlStore> {
    let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or(path);
    if let Some(dir) = Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
    }
    let url = if url.contains('?') { url.to_string() } else { format!("sqlite:{path}?mode=rwc") };
    let pool = options(pool_size.max(2), false, durability).connect(&url).await?;
    sqlx::migrate!("migrations/sqlite").run(&pool).await?;
    let writer = options(1, true, durability).connect(&url).await?;
    Ok(SqlStore { pool, writer, backend: Backend::Sqlite, held_dm_cap: Default::default() })
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
    }
    Ok(())
}

/// Copies the live database at `url` into a new file `dest` (`rtm backup`): one
/// consistent snapshot taken by `VACUUM INTO` inside a read transaction, so a running
/// server keeps writing meanwhile (WAL: readers do not block the writer). The copy is
/// a complete database on its own (no WAL beside it), compacted; it is written to
/// `dest.partial` and renamed when complete, so `dest` is never a half copy.
pub async fn backup(url: &str, dest: &Path) -> StoreResult<()> {
    use sqlx::Connection;
    let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or(path);
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

    use super::open;

    fn wal_len(dir: &std::path::Path) -> u64 {
        std::fs::metadata(dir.join("t.db-wal")).map(|m| m.len()).unwrap_or(0)
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

    #[tokio::test]
    async fn writer_leaves_the_wal_to_checkpoint_and_maintain() {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let store =
            open(&format!("sqlite:{}", dir.path().join("t.db").display()), 2, super::Durability::Normal).await.unwrap();
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
