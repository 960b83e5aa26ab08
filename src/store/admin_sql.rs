//! The admin console's queries (issue 15): paged user and room listings, admin
//! flags, last-seen times, password reset codes, archived and deleted rooms, the
//! audit log and server counts. A child of `sql.rs` (it shares that file's helpers);
//! the `Store` methods there are one-line delegations to these.

use sqlx::Row;

use super::{Backend, NAME_FOLD, ROOM_COLS, SqlStore, TOPIC_FOLD, USER_COLS, b, like_pattern, room_from, user_from};
use crate::{
    domain::{RoomId, UserId},
    store::{AdminRoom, AdminUser, AuditRow, NewAudit, StoreError, StoreResult, UserSort},
};

/// A reset code that can still be used: unspent and unexpired.
const USABLE_RESET: &str =
    "SELECT user_id FROM password_resets WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2";
const AUDIT_SELECT: &str = "SELECT a.id, a.ts, a.actor_id, u.username AS actor_username, a.action, a.target, a.detail
     FROM audit_log a LEFT JOIN users u ON u.id = a.actor_id";

fn audit_rows(rows: &[sqlx::any::AnyRow]) -> StoreResult<Vec<AuditRow>> {
    rows.iter()
        .map(|r| {
            let actor =
                match (r.try_get::<Option<i64>, _>("actor_id")?, r.try_get::<Option<String>, _>("actor_username")?) {
                    (Some(id), Some(name)) => Some((id, name)),
                    _ => None,
                };
            Ok(AuditRow {
                id: r.try_get("id")?,
                ts: r.try_get("ts")?,
                actor,
                action: r.try_get("action")?,
                target: r.try_get("target")?,
                detail: r.try_get("detail")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

impl SqlStore {
    pub(super) async fn admin_list_users(
        &self,
        query: Option<&str>,
        sort: UserSort,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<AdminUser>, i64)> {
        let q = query.map(str::trim).filter(|q| !q.is_empty());
        let filter = if q.is_some() {
            format!(
                "WHERE (u.username_lc LIKE $1 ESCAPE '\\' OR u.email_lc LIKE $1 ESCAPE '\\'
                    OR {NAME_FOLD} LIKE $1 ESCAPE '\\')"
            )
        } else {
            "WHERE 1 = 1".to_string()
        };
        // Never-seen accounts sort after every seen one; ids break ties (stable pages).
        let order = match sort {
            UserSort::LastSeen => "COALESCE(u.last_seen, -1) DESC, u.id",
            UserSort::Name => "u.username_lc, u.id",
            UserSort::Created => "u.created_at DESC, u.id DESC",
        };
        let (lim, off) = if q.is_some() { (2, 3) } else { (1, 2) };
        let sql = format!(
            "SELECT {USER_COLS}, u.last_seen FROM users u {filter} ORDER BY {order} LIMIT ${lim} OFFSET ${off}"
        );
        let count = format!("SELECT COUNT(*) AS n FROM users u {filter}");
        let (mut page, mut total) = (self.q(&sql), self.q(&count));
        if let Some(q) = q {
            page = page.bind(like_pattern(q));
            total = total.bind(like_pattern(q));
        }
        let rows = page.bind(limit).bind(offset).fetch_all(&self.pool).await?;
        let total: i64 = total.fetch_one(&self.pool).await?.try_get("n")?;
        let users = rows
            .iter()
            .map(|r| Ok(AdminUser { user: user_from(r)?, last_seen: r.try_get("last_seen")? }))
            .collect::<Result<_, sqlx::Error>>()?;
        Ok((users, total))
    }

    /// Sets or clears the admin flag. Clearing is refused (false) when no other
    /// enabled admin would remain ([`Self::unless_last_admin`]).
    pub(super) async fn admin_set_admin(&self, id: UserId, admin: bool) -> StoreResult<bool> {
        if !self.user_exists(id).await? {
            return Err(StoreError::NotFound);
        }
        if admin {
            self.q("UPDATE users SET is_admin = 1 WHERE id = $1").bind(id).execute(&self.writer).await?;
            return Ok(true);
        }
        self.unless_last_admin(id, "UPDATE users SET is_admin = 0 WHERE id = $1").await
    }

    /// Disables an account unless it is the last enabled admin (false then).
    pub(super) async fn admin_disable_guarded(&self, id: UserId) -> StoreResult<bool> {
        if !self.user_exists(id).await? {
            return Err(StoreError::NotFound);
        }
        self.unless_last_admin(id, "UPDATE users SET disabled = 1 WHERE id = $1").await
    }

    /// Runs `update` (one statement on user `$1`) unless that user is an enabled admin
    /// and no other enabled admin exists. A condition inside the UPDATE is not enough:
    /// under READ COMMITTED two admins demoting (or disabling) each other at once
    /// would each still see the other as admin, and both would succeed. So admin
    /// changes take the account lock that sign-up takes, in turn, and the check and
    /// the write happen under it (SQLite: one writer, BEGIN IMMEDIATE).
    async fn unless_last_admin(&self, id: UserId, update: &str) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        self.lock_accounts(&mut tx).await?;
        let row = self
            .q("SELECT
                  (SELECT COUNT(*) FROM users WHERE id = $1 AND is_admin = 1 AND disabled = 0) AS target,
                  (SELECT COUNT(*) FROM users WHERE id <> $1 AND is_admin = 1 AND disabled = 0) AS others")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let (target, others): (i64, i64) = (row.try_get("target")?, row.try_get("others")?);
        if target > 0 && others == 0 {
            return Ok(false);
        }
        self.q(update).bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn user_exists(&self, id: UserId) -> StoreResult<bool> {
        Ok(self.q("SELECT id FROM users WHERE id = $1").bind(id).fetch_optional(&self.pool).await?.is_some())
    }

    pub(super) async fn admin_touch_last_seen(&self, id: UserId, now: i64) -> StoreResult<()> {
        self.q("UPDATE users SET last_seen = $1 WHERE id = $2").bind(now).bind(id).execute(&self.writer).await?;
        Ok(())
    }

    pub(super) async fn admin_create_reset(
        &self,
        hash: &str,
        user: UserId,
        by: Option<UserId>,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<()> {
        self.q("INSERT INTO password_resets (code_hash, user_id, created_by, created_at, expires_at)
                VALUES ($1, $2, $3, $4, $5)")
            .bind(hash)
            .bind(user)
            .bind(by)
            .bind(now)
            .bind(expires_at)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub(super) async fn admin_reset_usable(&self, hash: &str, now: i64) -> StoreResult<bool> {
        let row = self.q(USABLE_RESET).bind(hash).bind(now).fetch_optional(&self.pool).await?;
        Ok(row.is_some())
    }

    /// Spends an unused, unexpired reset code: the UPDATE is the claim, so one code
    /// serves one request even when two race.
    pub(super) async fn admin_claim_reset(&self, hash: &str, now: i64) -> StoreResult<Option<UserId>> {
        let mut tx = self.begin_write().await?;
        let row = self.q(USABLE_RESET).bind(hash).bind(now).fetch_optional(&mut *tx).await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let user: UserId = row.try_get("user_id")?;
        let r = self
            .q("UPDATE password_resets SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL")
            .bind(now)
            .bind(hash)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() != 1 {
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(user))
    }

    pub(super) async fn admin_list_rooms(
        &self,
        query: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<AdminRoom>, i64)> {
        let q = query.map(str::trim).filter(|q| !q.is_empty());
        let filter = if q.is_some() {
            format!("WHERE r.kind = 'room' AND (r.name_lc LIKE $1 ESCAPE '\\' OR {TOPIC_FOLD} LIKE $1 ESCAPE '\\')")
        } else {
            "WHERE r.kind = 'room'".to_string()
        };
        let (lim, off) = if q.is_some() { (2, 3) } else { (1, 2) };
        let sql = format!(
            "SELECT {ROOM_COLS}, o.username AS owner_username,
                (SELECT COUNT(*) FROM memberships mc WHERE mc.room_id = r.id) AS member_count
             FROM rooms r LEFT JOIN users o ON o.id = r.owner_id
             {filter} ORDER BY r.name_lc, r.id LIMIT ${lim} OFFSET ${off}"
        );
        let count = format!("SELECT COUNT(*) AS n FROM rooms r {filter}");
        let (mut page, mut total) = (self.q(&sql), self.q(&count));
        if let Some(q) = q {
            page = page.bind(like_pattern(q));
            total = total.bind(like_pattern(q));
        }
        let rows = page.bind(limit).bind(offset).fetch_all(&self.pool).await?;
        let total: i64 = total.fetch_one(&self.pool).await?.try_get("n")?;
        let rooms = rows
            .iter()
            .map(|r| {
                Ok(AdminRoom {
                    room: room_from(r)?,
                    owner_username: r.try_get("owner_username")?,
                    members: r.try_get("member_count")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok((rooms, total))
    }

    /// Archives or unarchives a room (not a DM); false when there is no such room.
    pub(super) async fn admin_set_archived(&self, room: RoomId, archived: bool) -> StoreResult<bool> {
        let exists = self
            .q("SELECT id FROM rooms WHERE id = $1 AND kind = 'room'")
            .bind(room)
            .fetch_optional(&self.pool)
            .await?
            .is_some();
        if exists {
            self.q("UPDATE rooms SET archived = $1 WHERE id = $2")
                .bind(b(archived))
                .bind(room)
                .execute(&self.writer)
                .await?;
        }
        Ok(exists)
    }

    /// Deletes a room (not a DM) with its messages (their reactions and mentions
    /// follow by cascade) and memberships, in one transaction; returns who were its
    /// members, or None when there is no such room. Messages go by an explicit
    /// DELETE first so SQLite's search-index triggers see each row leave.
    pub(super) async fn admin_delete_room(&self, room: RoomId) -> StoreResult<Option<Vec<UserId>>> {
        let mut tx = self.begin_write().await?;
        let found = self
            .q("SELECT id FROM rooms WHERE id = $1 AND kind = 'room'")
            .bind(room)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !found {
            return Ok(None);
        }
        let members = self
            .q("SELECT user_id FROM memberships WHERE room_id = $1")
            .bind(room)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get("user_id"))
            .collect::<Result<Vec<UserId>, _>>()?;
        self.q("DELETE FROM messages WHERE room_id = $1").bind(room).execute(&mut *tx).await?;
        self.q("DELETE FROM rooms WHERE id = $1").bind(room).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Some(members))
    }

    pub(super) async fn admin_append_audit(&self, e: NewAudit) -> StoreResult<()> {
        self.q("INSERT INTO audit_log (ts, actor_id, action, target, detail) VALUES ($1, $2, $3, $4, $5)")
            .bind(e.ts)
            .bind(e.actor)
            .bind(e.action)
            .bind(e.target)
            .bind(e.detail)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub(super) async fn admin_audit(&self, before: Option<i64>, limit: i64) -> StoreResult<Vec<AuditRow>> {
        let rows = match before {
            Some(id) => {
                self.q(format!("{AUDIT_SELECT} WHERE a.id < $1 ORDER BY a.id DESC LIMIT $2"))
                    .bind(id)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                self.q(format!("{AUDIT_SELECT} ORDER BY a.id DESC LIMIT $1")).bind(limit).fetch_all(&self.pool).await?
            }
        };
        audit_rows(&rows)
    }

    pub(super) async fn admin_audit_max_id(&self) -> StoreResult<i64> {
        let row = self.q("SELECT COALESCE(MAX(id), 0) AS n FROM audit_log").fetch_one(&self.pool).await?;
        Ok(row.try_get("n")?)
    }

    /// Polled by every node's housekeeping: a range of the primary key.
    pub(super) async fn admin_cli_audit_after(&self, after: i64, limit: i64) -> StoreResult<Vec<AuditRow>> {
        let rows = self
            .q(format!("{AUDIT_SELECT} WHERE a.id > $1 AND a.actor_id IS NULL ORDER BY a.id LIMIT $2"))
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        audit_rows(&rows)
    }

    pub(super) async fn admin_prune_audit(&self, older_than: i64) -> StoreResult<u64> {
        Ok(self.q("DELETE FROM audit_log WHERE ts < $1").bind(older_than).execute(&self.writer).await?.rows_affected())
    }

    /// (accounts, rooms other than DMs).
    pub(super) async fn admin_counts(&self) -> StoreResult<(i64, i64)> {
        let row = self
            .q("SELECT (SELECT COUNT(*) FROM users) AS users, (SELECT COUNT(*) FROM rooms WHERE kind = 'room') AS rooms")
            .fetch_one(&self.pool)
            .await?;
        Ok((row.try_get("users")?, row.try_get("rooms")?))
    }

    /// The database's size on disk, as each backend reports it cheaply.
    pub(super) async fn admin_database_bytes(&self) -> StoreResult<Option<i64>> {
        let sql = match self.backend {
            Backend::Sqlite => "SELECT page_count * page_size AS n FROM pragma_page_count(), pragma_page_size()",
            Backend::Postgres => "SELECT CAST(pg_database_size(current_database()) AS BIGINT) AS n",
            Backend::Mysql => {
                "SELECT CAST(COALESCE(SUM(data_length + index_length), 0) AS SIGNED) AS n
                 FROM information_schema.tables WHERE table_schema = DATABASE()"
            }
        };
        Ok(self.q(sql).fetch_optional(&self.pool).await?.map(|r| r.try_get("n")).transpose()?)
    }

    pub(super) fn admin_backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::Mysql => "mysql",
        }
    }
}
