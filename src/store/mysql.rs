//! MySQL 8 and MariaDB 10.5+ (`--database mysql://user:password@host/db`), a store
//! several nodes can share like PostgreSQL. The queries are the ones of `sql.rs`; what
//! differs here:
//!
//! - Placeholders: MySQL has only positional `?`. Statements are written with `$n`
//!   (PostgreSQL's) and [`positional`] turns them into `?`, binding a value once per
//!   use.
//! - No `UPDATE … RETURNING` (MariaDB has `INSERT … RETURNING` only, MySQL neither):
//!   the append locks its rooms with `SELECT … FOR UPDATE` (in id order) and reads
//!   their `last_seq` there, then reserves seqs with one UPDATE in the same
//!   transaction; new rows' ids come from `LAST_INSERT_ID()`.
//! - Generated lists (a batch's rooms, client ids, rows) come in a few sizes only
//!   (powers of two, see `SqlStore::padded`), and every statement stays prepared
//!   ([`STATEMENT_CACHE`]): closing an evicted one cost a 40 ms stall over TCP.
//! - `INSERT IGNORE` / `ON DUPLICATE KEY UPDATE` for `ON CONFLICT`, a row-value
//!   `IN ((…), …)` list for `IN (VALUES …)`, and the reserved word `key` quoted.
//!
//! Every connection is set up the same way, whatever the server's defaults:
//! READ COMMITTED (PostgreSQL's level, which the store's statements are written for:
//! each statement sees what committed before it, and locking reads wait for the row
//! locks of other writers), `NO_BACKSLASH_ESCAPES` (string literals as in standard
//! SQL, so `ESCAPE '\'` means what it does on the other backends), `PIPES_AS_CONCAT`
//! (`||` concatenates), strict mode (too long a value is an error, never silently
//! cut), and utf8mb4 for everything sent and received.

use sqlx::{Executor, any::AnyPoolOptions};

use super::{
    StoreResult,
    sql::{Backend, SqlStore},
};

/// Prepared statements kept per connection (sqlx's default is 100). The store has
/// ~60 fixed statements and, on MySQL, ~50 generated shapes (`SqlStore::padded`):
/// every one stays prepared. Each costs the server a little memory; MySQL counts them
/// against `max_prepared_stmt_count` (default 16,382): 256 × `--db-pool` per node.
const STATEMENT_CACHE: u32 = 256;

pub async fn open(url: &str, pool_size: u32) -> StoreResult<SqlStore> {
    let url = if url.contains("statement-cache-capacity=") {
        url.to_string()
    } else {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}statement-cache-capacity={STATEMENT_CACHE}")
    };
    // As on PostgreSQL: a request waits at most 5 s for a connection, so an
    // unreachable server is a clear `unavailable` error instead of a 30 s hang.
    let pool = AnyPoolOptions::new()
        .max_connections(pool_size.max(2))
        .acquire_timeout(std::time::Duration::from_secs(5))
        .after_connect(|conn, _meta| Box::pin(setup(conn)))
        .connect(&url)
        .await?;
    sqlx::migrate!("migrations/mysql").run(&pool).await?;
    // Shorter words are not in the FULLTEXT index: a query must not require them.
    let min: i64 =
        sqlx::query_scalar("SELECT CAST(@@innodb_ft_min_token_size AS SIGNED)").fetch_one(&pool).await.unwrap_or(3);
    Ok(SqlStore {
        writer: pool.clone(),
        pool,
        backend: Backend::Mysql,
        held_dm_cap: Default::default(),
        known: Default::default(),
        min_word_chars: usize::try_from(min).unwrap_or(3).max(1),
        appends: Default::default(),
    })
}

async fn setup(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
    conn.execute(
        "SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, ',STRICT_TRANS_TABLES,NO_BACKSLASH_ESCAPES,PIPES_AS_CONCAT,NO_ENGINE_SUBSTITUTION'),
             NAMES utf8mb4 COLLATE utf8mb4_bin",
    )
    .await?;
    conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED").await?;
    Ok(())
}

/// Rewrites the `$n` placeholders of `sql` as MySQL's `?`, returning the new text and,
/// in order, the number of the value each `?` takes. Text inside quotes ('…', "…",
/// `…`) is copied as it is.
pub(crate) fn positional(sql: &str) -> (String, Vec<usize>) {
    let mut out = String::with_capacity(sql.len());
    let mut order = Vec::new();
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if matches!(c, '\'' | '"' | '`') => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) => {
                let mut n = 0usize;
                while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                    n = n.saturating_mul(10).saturating_add(d as usize);
                    chars.next();
                }
                order.push(n);
                out.push('?');
            }
            None => out.push(c),
        }
    }
    (out, order)
}

#[cfg(test)]
mod tests {
    use super::positional;

    #[test]
    fn placeholders_become_positional_and_repeat_their_value() {
        let (sql, order) =
            positional("SELECT a FROM t WHERE x = $2 AND y = '$1' AND (z = $1 OR w = $12) AND `$3` = $2");
        assert_eq!(sql, "SELECT a FROM t WHERE x = ? AND y = '$1' AND (z = ? OR w = ?) AND `$3` = ?");
        assert_eq!(order, vec![2, 1, 12, 2]);
        assert_eq!(positional("SELECT 'it''s $1', $1"), ("SELECT 'it''s $1', ?".to_string(), vec![1]));
        assert_eq!(positional("SELECT 1"), ("SELECT 1".to_string(), vec![]));
    }
}
