//! PostgreSQL, for several nodes sharing one store. Per-room sequence numbers come from
//! `UPDATE rooms … RETURNING last_seq` inside the append transaction, so the row lock
//! orders concurrent writers from any node.

use sqlx::any::AnyPoolOptions;

use super::{
    StoreResult,
    sql::{Backend, SqlStore},
};

pub async fn open(url: &str, pool_size: u32) -> StoreResult<SqlStore> {
    let pool = AnyPoolOptions::new().max_connections(pool_size.max(2)).connect(url).await?;
    sqlx::migrate!("migrations/postgres").run(&pool).await?;
    Ok(SqlStore { writer: pool.clone(), pool, backend: Backend::Postgres })
}
