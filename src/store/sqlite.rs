//! The embedded default: SQLite in WAL mode (readers never wait for the writer), with a
//! busy timeout (the pool's writers queue instead of failing) and foreign keys on.
//! `synchronous=NORMAL` is the WAL setting SQLite recommends: a power cut may lose the
//! last commits but never corrupts the file.

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
    let pool = AnyPoolOptions::new()
        .max_connections(pool_size.max(2))
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute("PRAGMA journal_mode = WAL").await?;
                conn.execute("PRAGMA synchronous = NORMAL").await?;
                conn.execute("PRAGMA busy_timeout = 10000").await?;
                conn.execute("PRAGMA foreign_keys = ON").await?;
                Ok(())
            })
        })
        .connect(&url)
        .await?;
    sqlx::migrate!("migrations/sqlite").run(&pool).await?;
    Ok(SqlStore { pool, backend: Backend::Sqlite })
}
