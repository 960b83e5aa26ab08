//! PostgreSQL, for several nodes sharing one store. Per-room sequence numbers come from
//! `UPDATE rooms … RETURNING last_seq` inside the append transaction, so the row lock
//! orders concurrent writers from any node.

use sqlx::any::AnyPoolOptions;

use super::{
    StoreResult,
    sql::{Backend, SqlStore},
};

pub async fn open(url: &str, pool_size: u32) -> StoreResult<SqlStore> {
    // A request waits at most 5 s for a connection: with PostgreSQL down it gets a
    // clear `unavailable` error instead of hanging for sqlx's default 30 s.
    let pool = AnyPoolOptions::new()
        .max_connections(pool_size.max(2))
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect(url)
        .await?;
    sqlx::migrate!("migrations/postgres").run(&pool).await?;
    Ok(SqlStore {
        writer: pool.clone(),
        pool,
        backend: Backend::Postgres,
        held_dm_cap: Default::default(),
        known: Default::default(),
        min_word_chars: 1,
        appends: Default::default(),
    })
}
