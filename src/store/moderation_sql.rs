//! The moderation queries (issue 15): room roles, bans, mutes, read-only rooms,
//! renames and user blocks. A child of `sql.rs` (it shares that file's helpers); the
//! `Store` methods there are one-line delegations to these.

use sqlx::Row;

use super::{Backend, SqlStore, USER_COLS, b, user_from};
use crate::{
    domain::{RoomId, UserId},
    store::{MemberRole, StoreError, StoreResult, User},
};

impl SqlStore {
    pub(super) async fn mod_member_roles(&self, room: RoomId) -> StoreResult<Vec<MemberRole>> {
        let rows = self
            .q("SELECT m.user_id, m.role, mu.muted_until FROM memberships m
                LEFT JOIN room_mutes mu ON mu.room_id = m.room_id AND mu.user_id = m.user_id
                WHERE m.room_id = $1")
            .bind(room)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(MemberRole {
                    user: r.try_get("user_id")?,
                    role: r.try_get("role")?,
                    muted_until: r.try_get("muted_until")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    pub(super) async fn mod_set_role(&self, room: RoomId, user: UserId, role: &str) -> StoreResult<bool> {
        let n = self
            .q("UPDATE memberships SET role = $1 WHERE room_id = $2 AND user_id = $3")
            .bind(role)
            .bind(room)
            .bind(user)
            .execute(&self.writer)
            .await?
            .rows_affected();
        if n > 0 || self.backend != Backend::Mysql {
            return Ok(n > 0);
        }
        // MySQL counts only changed rows: the same role again is still a member.
        self.is_member_q(room, user).await
    }

    async fn is_member_q(&self, room: RoomId, user: UserId) -> StoreResult<bool> {
        let row = self
            .q("SELECT 1 AS one FROM memberships WHERE room_id = $1 AND user_id = $2")
            .bind(room)
            .bind(user)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    pub(super) async fn mod_ban(&self, room: RoomId, user: UserId, by: UserId, now: i64) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let (insert, ignore) = self.insert_ignore();
        self.q(format!(
            "{insert} INTO room_bans (room_id, user_id, banned_by, created_at) VALUES ($1, $2, $3, $4){ignore}"
        ))
        .bind(room)
        .bind(user)
        .bind(by)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let was = self
            .q("DELETE FROM memberships WHERE room_id = $1 AND user_id = $2")
            .bind(room)
            .bind(user)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        tx.commit().await?;
        Ok(was)
    }

    pub(super) async fn mod_unban(&self, room: RoomId, user: UserId) -> StoreResult<bool> {
        let n = self
            .q("DELETE FROM room_bans WHERE room_id = $1 AND user_id = $2")
            .bind(room)
            .bind(user)
            .execute(&self.writer)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    pub(super) async fn mod_is_banned(&self, room: RoomId, user: UserId) -> StoreResult<bool> {
        let row = self
            .q("SELECT 1 AS one FROM room_bans WHERE room_id = $1 AND user_id = $2")
            .bind(room)
            .bind(user)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    pub(super) async fn mod_bans(&self, room: RoomId) -> StoreResult<Vec<User>> {
        let sql = format!(
            "SELECT {USER_COLS} FROM room_bans x JOIN users u ON u.id = x.user_id WHERE x.room_id = $1 ORDER BY u.username_lc"
        );
        let rows = self.q(sql).bind(room).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(user_from).collect::<Result<_, _>>()?)
    }

    pub(super) async fn mod_mute(&self, room: RoomId, user: UserId, until: i64) -> StoreResult<()> {
        // Replace, portably: no upsert syntax is common to the three databases.
        let mut tx = self.begin_write().await?;
        self.q("DELETE FROM room_mutes WHERE room_id = $1 AND user_id = $2")
            .bind(room)
            .bind(user)
            .execute(&mut *tx)
            .await?;
        self.q("INSERT INTO room_mutes (room_id, user_id, muted_until) VALUES ($1, $2, $3)")
            .bind(room)
            .bind(user)
            .bind(until)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn mod_unmute(&self, room: RoomId, user: UserId) -> StoreResult<bool> {
        let n = self
            .q("DELETE FROM room_mutes WHERE room_id = $1 AND user_id = $2")
            .bind(room)
            .bind(user)
            .execute(&self.writer)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    pub(super) async fn mod_set_read_only(&self, room: RoomId, read_only: bool) -> StoreResult<()> {
        self.q("UPDATE rooms SET read_only = $1 WHERE id = $2")
            .bind(b(read_only))
            .bind(room)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub(super) async fn mod_rename_room(&self, room: RoomId, name: &str, name_lc: &str) -> StoreResult<()> {
        let n = self
            .q("UPDATE rooms SET name = $1, name_lc = $2 WHERE id = $3 AND kind = 'room'")
            .bind(name)
            .bind(name_lc)
            .bind(room)
            .execute(&self.writer)
            .await?
            .rows_affected();
        if n == 0 && self.backend != Backend::Mysql {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    pub(super) async fn mod_block(&self, user: UserId, other: UserId, now: i64) -> StoreResult<bool> {
        let (insert, ignore) = self.insert_ignore();
        let n = self
            .q(format!("{insert} INTO user_blocks (user_id, blocked_id, created_at) VALUES ($1, $2, $3){ignore}"))
            .bind(user)
            .bind(other)
            .bind(now)
            .execute(&self.writer)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    pub(super) async fn mod_unblock(&self, user: UserId, other: UserId) -> StoreResult<bool> {
        let n = self
            .q("DELETE FROM user_blocks WHERE user_id = $1 AND blocked_id = $2")
            .bind(user)
            .bind(other)
            .execute(&self.writer)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    pub(super) async fn mod_blocks(&self, user: UserId) -> StoreResult<Vec<User>> {
        let sql = format!(
            "SELECT {USER_COLS} FROM user_blocks x JOIN users u ON u.id = x.blocked_id WHERE x.user_id = $1 ORDER BY u.username_lc"
        );
        let rows = self.q(sql).bind(user).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(user_from).collect::<Result<_, _>>()?)
    }

    pub(super) async fn mod_blocked_ids(&self, user: UserId) -> StoreResult<Vec<UserId>> {
        let rows = self
            .q("SELECT blocked_id FROM user_blocks WHERE user_id = $1 ORDER BY blocked_id")
            .bind(user)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| r.try_get("blocked_id")).collect::<Result<_, _>>()?)
    }

    pub(super) async fn mod_blocked_either(&self, a: UserId, bb: UserId) -> StoreResult<bool> {
        let row = self
            .q("SELECT 1 AS one FROM user_blocks
                WHERE (user_id = $1 AND blocked_id = $2) OR (user_id = $2 AND blocked_id = $1)")
            .bind(a)
            .bind(bb)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    pub(super) async fn mod_muted_until(&self, room: RoomId, user: UserId) -> StoreResult<Option<i64>> {
        self.room_user_value("SELECT muted_until FROM room_mutes WHERE room_id = $1 AND user_id = $2", room, user).await
    }

    pub(super) async fn mod_member_role(&self, room: RoomId, user: UserId) -> StoreResult<Option<String>> {
        self.room_user_value("SELECT role FROM memberships WHERE room_id = $1 AND user_id = $2", room, user).await
    }

    pub(super) async fn mod_dm_between(&self, a: UserId, bb: UserId) -> StoreResult<Option<RoomId>> {
        let row = self
            .q("SELECT id FROM rooms WHERE dm_key = $1")
            .bind(crate::domain::dm_key(a, bb))
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("id")).transpose()?)
    }
}
