//! The admin console's use cases (issue 15), shared by the HTTP API and the `rtm` CLI:
//! listing users and rooms, promoting and demoting admins (never leaving none),
//! password reset links, ending a user's sessions, archiving and deleting rooms,
//! server facts, and the audit log that every admin action writes to, in the same
//! function that acts. `by` is the admin acting, or `None` for the CLI (an operator
//! on the machine, recorded in the audit log with no actor).

use serde::Serialize;
use serde_json::json;

use super::{Actor, Chat, ChatError, ChatResult, now_ms};
use crate::{
    auth,
    domain::{DomainError, Password, RoomId, UserId},
    hub::{Control, Envelope, Topic},
    store::{AdminRoom, AdminUser, AuditRow, NewAudit, StoreError, User, UserSort},
    ws::protocol::ServerFrame,
};

/// How long a password reset link stays valid.
pub const RESET_TTL_MS: i64 = 24 * 3600 * 1000;
/// Most rows one listing page returns.
pub const MAX_PAGE: i64 = 200;

/// A freshly issued reset link's code (shown once, only its hash is kept).
pub struct ResetLink {
    pub code: String,
    pub expires_at: i64,
}

/// What the console shows about this server.
#[derive(Debug, Clone, Serialize)]
pub struct ServerFacts {
    pub version: &'static str,
    pub uptime_secs: u64,
    /// Open WebSockets on this node.
    pub connections: usize,
    pub database: &'static str,
    pub bus: &'static str,
    pub users: i64,
    pub rooms: i64,
    pub storage: Storage,
    /// One-time background jobs not finished on this database (any node may run
    /// them); empty on a database this version created.
    pub maintenance: Vec<Maintenance>,
}

/// A one-time background job still under way, e.g. after an upgrade.
#[derive(Debug, Clone, Serialize)]
pub struct Maintenance {
    /// `search_reindex`: the search words of messages stored by an older version.
    pub job: &'static str,
    /// Items passed and all items (kept events, for `search_reindex`).
    pub done: i64,
    pub total: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Storage {
    pub database_bytes: Option<i64>,
    pub files_bytes: u64,
}

fn internal(e: impl std::fmt::Display) -> ChatError {
    ChatError::Internal(e.to_string())
}

/// The page bounds a client asked for, clamped (limit 1..=200, default 50).
pub fn page(offset: Option<i64>, limit: Option<i64>) -> (i64, i64) {
    (offset.unwrap_or(0).max(0), limit.unwrap_or(50).clamp(1, MAX_PAGE))
}

fn not_found_user(e: StoreError) -> ChatError {
    match e {
        StoreError::NotFound => ChatError::NotFound("user"),
        e => e.into(),
    }
}

impl Chat {
    /// The web console needs an admin; the CLI (`None`) already has the machine.
    fn check_admin(by: Option<&Actor>) -> ChatResult<()> {
        match by {
            Some(a) if !a.user.is_admin => Err(ChatError::Forbidden("only the admin may do this")),
            _ => Ok(()),
        }
    }

    /// Records an admin action. Called by each action right after it took effect.
    pub(super) async fn audit(
        &self,
        by: Option<&Actor>,
        action: &str,
        target: impl Into<String>,
        mut detail: serde_json::Value,
    ) -> ChatResult<()> {
        if by.is_none()
            && self.bus.shared()
            && let Some(obj) = detail.as_object_mut()
        {
            // A CLI with the cluster's bus has told every node's sockets itself: the
            // nodes that read this entry (`apply_cli_actions`) must not tell them again.
            obj.insert("announced".into(), json!(true));
        }
        self.store
            .append_audit(NewAudit {
                ts: now_ms(),
                actor: by.map(|a| a.user.id),
                action: action.to_string(),
                target: target.into(),
                detail: detail.to_string(),
            })
            .await?;
        Ok(())
    }

    async fn account(&self, id: UserId) -> ChatResult<User> {
        self.store.user_by_id(id).await?.ok_or(ChatError::NotFound("user"))
    }

    /// A page of accounts (search, sort, paging) and how many match.
    pub async fn admin_users(
        &self,
        by: Option<&Actor>,
        query: Option<&str>,
        sort: UserSort,
        offset: i64,
        limit: i64,
    ) -> ChatResult<(Vec<AdminUser>, i64)> {
        Self::check_admin(by)?;
        if let Some(q) = query {
            crate::domain::validate_query(q)?;
        }
        Ok(self.store.admin_list_users(query, sort, offset, limit).await?)
    }

    /// Creates an account whatever the registration mode (console and `rtm user add`).
    pub async fn admin_add_user(&self, by: Option<&Actor>, form: super::NewAccount) -> ChatResult<User> {
        Self::check_admin(by)?;
        let user = self.register(form, true).await?;
        self.audit(by, "user.add", &user.username, json!({ "id": user.id, "admin": user.is_admin })).await?;
        Ok(user)
    }

    /// Makes an account an admin or not. Demoting is refused with `last_admin` when
    /// no other enabled admin would remain (the store checks it in the same UPDATE).
    /// A demotion also ends the account's sessions: an open socket holds the account
    /// as it was at the handshake, and must not keep admin powers (deleting anyone's
    /// message, acting as every room's owner) until it happens to reconnect.
    pub async fn set_admin(&self, by: Option<&Actor>, id: UserId, admin: bool) -> ChatResult<()> {
        Self::check_admin(by)?;
        let user = self.account(id).await?;
        let changed = user.is_admin != admin;
        if changed {
            if !self.store.set_admin(id, admin).await.map_err(not_found_user)? {
                return Err(ChatError::LastAdmin);
            }
            // HTTP requests read the account each time; cached rooms hold no flags.
            self.bus.publish(Envelope::control(Topic::Nodes, Control::UserChanged(id), None)).await?;
            if !admin {
                // Its sign-in sessions end, and every socket closes, API-token ones
                // too: a socket keeps the powers it had at its handshake.
                self.store.delete_user_sessions(id, None).await?;
                self.bus.publish(Envelope::control(Topic::User(id), Control::Demoted, None)).await?;
            }
        }
        let action = if admin { "user.promote" } else { "user.demote" };
        tracing::info!(user_id = id, admin, changed, "admin flag set");
        self.audit(by, action, &user.username, json!({ "id": id, "changed": changed })).await
    }

    /// Deletes every sign-in session of `id` and closes their sockets on every node.
    async fn end_sessions_of(&self, id: UserId) -> ChatResult<()> {
        self.store.delete_user_sessions(id, None).await?;
        self.bus.publish(Envelope::control(Topic::User(id), Control::EndSessionsExcept(None), None)).await?;
        Ok(())
    }

    /// Enables or disables an account, audited (the console's and the CLI's way).
    pub async fn admin_disable(&self, by: Option<&Actor>, id: UserId, disabled: bool) -> ChatResult<()> {
        Self::check_admin(by)?;
        if by.is_some_and(|a| a.user.id == id) && disabled {
            return Err(ChatError::Forbidden("you cannot disable your own account"));
        }
        let user = self.account(id).await?;
        self.set_disabled(id, disabled, by.is_some()).await?;
        let action = if disabled { "user.disable" } else { "user.enable" };
        self.audit(by, action, &user.username, json!({ "id": id })).await
    }

    /// Issues a single-use password reset code for an account (valid 24 h). Only its
    /// hash is kept; the code is shown to the admin once, to hand over.
    pub async fn issue_reset_link(&self, by: Option<&Actor>, id: UserId) -> ChatResult<ResetLink> {
        Self::check_admin(by)?;
        let user = self.account(id).await?;
        let code = auth::new_secret().map_err(internal)?;
        let now = now_ms();
        let expires_at = now + RESET_TTL_MS;
        self.store.create_password_reset(&auth::hash_secret(&code), id, by.map(|a| a.user.id), now, expires_at).await?;
        self.audit(by, "user.reset_link", &user.username, json!({ "id": id, "expires_at": expires_at })).await?;
        Ok(ResetLink { code, expires_at })
    }

    /// Whether a reset code would be taken now (nothing is spent), so the reset page
    /// can say a spent or expired link is so before anyone types a password.
    pub async fn check_reset_code(&self, code: &str) -> ChatResult<()> {
        if self.store.password_reset_usable(&reset_code_hash(code)?, now_ms()).await? {
            Ok(())
        } else {
            Err(ChatError::InvalidResetCode)
        }
    }

    /// Sets a new password with a reset code (no sign-in needed); every session of
    /// the account ends and its sockets close. A wrong, used or expired code is
    /// `invalid_reset_code`; a password the rules refuse leaves the code unspent.
    pub async fn reset_password(&self, code: &str, password: &str) -> ChatResult<()> {
        let password = Password::parse(password)?;
        let hash = reset_code_hash(code)?;
        let user = self.store.claim_password_reset(&hash, now_ms()).await?.ok_or(ChatError::InvalidResetCode)?;
        let password_hash = self.hasher.hash(password.expose()).await.map_err(internal)?;
        self.store.set_password(user, &password_hash).await?;
        self.end_sessions_of(user).await?;
        tracing::info!(user_id = user, "password reset with a link; sessions ended");
        let username = self.store.user_by_id(user).await?.map(|u| u.username).unwrap_or_default();
        self.store
            .append_audit(NewAudit {
                ts: now_ms(),
                actor: Some(user),
                action: "user.password_reset".into(),
                target: username,
                detail: json!({ "id": user }).to_string(),
            })
            .await?;
        Ok(())
    }

    /// Ends every sign-in session of an account and closes their sockets on every
    /// node (API tokens are not sessions: revoke those, or disable the account).
    pub async fn end_user_sessions(&self, by: Option<&Actor>, id: UserId) -> ChatResult<()> {
        Self::check_admin(by)?;
        let user = self.account(id).await?;
        self.end_sessions_of(id).await?;
        tracing::info!(user_id = id, "sessions ended by the admin");
        self.audit(by, "user.end_sessions", &user.username, json!({ "id": id })).await
    }

    /// A page of rooms (public and private, not DMs) and how many match.
    pub async fn admin_rooms(
        &self,
        by: Option<&Actor>,
        query: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> ChatResult<(Vec<AdminRoom>, i64)> {
        Self::check_admin(by)?;
        if let Some(q) = query {
            crate::domain::validate_query(q)?;
        }
        Ok(self.store.admin_list_rooms(query, offset, limit).await?)
    }

    /// The room an admin names (rooms only: DMs are nobody's to archive or delete).
    async fn admin_room(&self, id: RoomId) -> ChatResult<crate::store::Room> {
        match self.store.room(id).await? {
            Some(r) if r.kind == crate::domain::RoomKind::Room => Ok(r),
            _ => Err(ChatError::NotFound("room")),
        }
    }

    /// Archives (nobody may send; still readable) or unarchives a room. Every node
    /// drops its cached copy, so the next send anywhere sees it.
    pub async fn set_archived(&self, by: Option<&Actor>, id: RoomId, archived: bool) -> ChatResult<()> {
        Self::check_admin(by)?;
        let room = self.admin_room(id).await?;
        if !self.store.set_archived(id, archived).await? {
            return Err(ChatError::NotFound("room"));
        }
        self.room_changed(id).await?;
        self.tell_archived(&room, archived).await?;
        tracing::info!(room_id = id, archived, "room archive state changed");
        let action = if archived { "room.archive" } else { "room.unarchive" };
        self.audit(by, action, room.name.unwrap_or_default(), json!({ "id": id })).await
    }

    /// An account the CLI added joined the default room there, but its `joined` notice
    /// reached no socket (the CLI's process has none): this node delivers it, so the
    /// room's members see no hole in its seqs. The notice is among the room's latest.
    async fn tell_cli_default_join(&self, user: UserId) -> ChatResult<()> {
        let Some(room) = self.default_room().await? else {
            return Ok(());
        };
        let recent = self.store.history(room, None, 50).await?;
        if let Some(m) =
            recent.into_iter().rev().find(|m| m.author_id == user && m.kind == crate::domain::MessageKind::Joined)
        {
            self.publish(Topic::Room(room), &super::messages::stored_frame(m)).await?;
        }
        Ok(())
    }

    /// Members' open pages learn a room's archive state at once (their composers close
    /// or reopen).
    async fn tell_archived(&self, room: &crate::store::Room, archived: bool) -> ChatResult<()> {
        self.publish(
            Topic::Room(room.id),
            &ServerFrame::RoomUpdated {
                room: room.id,
                name: room.name.clone().unwrap_or_default(),
                read_only: room.read_only,
                archived,
                topic: room.topic.clone(),
                retention: room.retention,
                owner: room.owner_id,
            },
        )
        .await
    }

    /// Deletes a room with its messages; every member's connections, on every node,
    /// get `room_left` and stop receiving it.
    pub async fn delete_room(&self, by: Option<&Actor>, id: RoomId) -> ChatResult<()> {
        Self::check_admin(by)?;
        let room = self.admin_room(id).await?;
        let members = self.store.delete_room(id).await?.ok_or(ChatError::NotFound("room"))?;
        self.room_changed(id).await?;
        // Its files' rows went with the messages; the sweeper removes their blobs.
        self.files_changed();
        for user in &members {
            self.tell_room_left(*user, id).await?;
        }
        tracing::info!(room_id = id, members = members.len(), "room deleted");
        let mut detail = json!({ "id": id, "members": members.len() });
        if by.is_none() {
            // Running nodes learn of a CLI deletion from this entry (`apply_cli_actions`),
            // and by then the memberships are gone: the entry names who to tell.
            detail["member_ids"] = json!(members);
        }
        self.audit(by, "room.delete", room.name.unwrap_or_default(), detail).await
    }

    /// Applies on this node what `rtm` did from the shell: the CLI is a separate
    /// process whose bus (without Redis) reaches no running node, so each node reads
    /// the CLI's new audit entries at housekeeping (a primary-key range, every 2 s) and
    /// does here what the acting node would have done: drop a cached room that was
    /// archived, unarchived or deleted, tell a deleted room's members, close the
    /// sockets of ended sessions. (Disabled accounts have their own poll.)
    ///
    /// What goes to sockets is published once for the whole cluster: not at all when
    /// the CLI had the cluster's bus and told them itself (`announced`), else by the one
    /// node that claims the entry on the bus. Dropping a cache is every node's own
    /// business, so each node does that.
    pub(super) async fn apply_cli_actions(&self) -> ChatResult<()> {
        use std::sync::atomic::Ordering;
        let seen = self.cli_seen.load(Ordering::Relaxed);
        for entry in self.store.cli_audit_after(seen, 100).await? {
            let detail: serde_json::Value = serde_json::from_str(&entry.detail).unwrap_or_default();
            let id = detail["id"].as_i64();
            match (entry.action.as_str(), id) {
                ("room.archive" | "room.unarchive" | "room.delete", Some(room)) => self.forget_room(room),
                ("user.add", Some(_)) => self.forget_default_room().await,
                _ => {}
            }
            if entry.action == "room.delete" {
                self.files_changed();
            }
            if let Some(id) = id.filter(|_| announces(&entry.action, &detail))
                && self.claim_cli_entry(entry.id).await
            {
                self.announce_cli_action(&entry.action, id, &detail).await?;
            }
            self.cli_seen.store(entry.id, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Whether this node announces the CLI's audit entry `id` (see `apply_cli_actions`).
    async fn claim_cli_entry(&self, id: i64) -> bool {
        // A day outlives any node's lag behind the log; the key then goes by itself.
        self.bus.claim(&format!("cli:{id}"), 86_400_000).await.unwrap_or(true)
    }

    /// Tells the sockets what a CLI action changed, as the acting node would have. The
    /// CLI deleted the sessions before its entry was written, so the sessions alive
    /// now were signed in since: ending or demoting spares their sockets.
    async fn announce_cli_action(&self, action: &str, id: i64, detail: &serde_json::Value) -> ChatResult<()> {
        let control = match action {
            "room.archive" | "room.unarchive" => {
                if let Some(r) = self.store.room(id).await? {
                    self.tell_archived(&r, action == "room.archive").await?;
                }
                return Ok(());
            }
            "room.delete" => {
                let members = detail["member_ids"].as_array().cloned().unwrap_or_default();
                for user in members.iter().filter_map(serde_json::Value::as_i64) {
                    self.tell_room_left(user, id).await?;
                }
                return Ok(());
            }
            "user.add" => return self.tell_cli_default_join(id).await,
            "user.demote" => Control::DemotedExcept(self.store.session_hashes(id).await?),
            "user.end_sessions" => Control::EndSessionsNotIn(self.store.session_hashes(id).await?),
            _ => return Ok(()),
        };
        self.bus.publish(Envelope::control(Topic::User(id), control, None)).await?;
        Ok(())
    }

    /// Facts about this server for the console. `connections` is this node's count
    /// (the hub is the HTTP layer's).
    pub async fn server_facts(&self, by: Option<&Actor>, connections: usize) -> ChatResult<ServerFacts> {
        Self::check_admin(by)?;
        let (users, rooms) = self.store.counts().await?;
        let database_bytes = self.store.database_bytes().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the database size");
            None
        });
        let files = self.policy.files.dir.clone();
        let files_bytes = tokio::task::spawn_blocking(move || dir_bytes(&files)).await.unwrap_or(0);
        let maintenance = super::search::reindex_progress(&self.store)
            .await?
            .map(|(done, total)| Maintenance { job: "search_reindex", done, total })
            .into_iter()
            .collect();
        Ok(ServerFacts {
            version: env!("CARGO_PKG_VERSION"),
            uptime_secs: self.started.elapsed().as_secs(),
            connections,
            database: self.store.backend_name(),
            bus: if self.bus.shared() { "redis" } else { "local" },
            users,
            rooms,
            storage: Storage { database_bytes, files_bytes },
            maintenance,
        })
    }

    /// Audit entries with an id below `before`, newest first.
    pub async fn audit_log(&self, by: Option<&Actor>, before: Option<i64>, limit: i64) -> ChatResult<Vec<AuditRow>> {
        Self::check_admin(by)?;
        Ok(self.store.audit(before, limit.clamp(1, MAX_PAGE)).await?)
    }

    /// Deletes audit entries older than `--audit-keep-days` (periodic maintenance).
    pub async fn prune_audit(&self) -> ChatResult<u64> {
        let keep_ms = self.policy.audit_keep_days.max(1).saturating_mul(86_400_000);
        let n = self.store.prune_audit(now_ms().saturating_sub(keep_ms)).await?;
        if n > 0 {
            tracing::info!(deleted = n, "pruned old audit entries");
        }
        Ok(n)
    }

    /// A login (username or email) the CLI names, as an id.
    pub async fn user_id_for(&self, login: &str) -> ChatResult<UserId> {
        Ok(self.find_user(login).await?.id)
    }

    /// A room the CLI names: by id, or by name ignoring case.
    pub async fn room_id_for(&self, name: &str) -> ChatResult<RoomId> {
        let name = name.trim().trim_start_matches('#');
        if let Ok(id) = name.parse::<RoomId>() {
            return Ok(id);
        }
        if name.is_empty() {
            return Err(DomainError::new("invalid_room", "name a room").into());
        }
        let (rooms, _) = self.store.admin_list_rooms(Some(name), 0, MAX_PAGE).await?;
        let lc = name.to_lowercase();
        rooms
            .into_iter()
            .find(|r| r.room.name.as_deref().map(str::to_lowercase).as_deref() == Some(lc.as_str()))
            .map(|r| r.room.id)
            .ok_or(ChatError::NotFound("room"))
    }
}

/// Whether a node announces this CLI audit entry to sockets: not when the CLI had the
/// cluster's bus and told them itself, nor for actions sockets need not hear of.
fn announces(action: &str, detail: &serde_json::Value) -> bool {
    detail["announced"] != true
        && match action {
            "room.archive" | "room.unarchive" | "room.delete" | "user.add" | "user.end_sessions" => true,
            "user.demote" => detail["changed"] == true,
            _ => false,
        }
}

/// The stored form of a reset code as typed or pasted (spaces around it are ignored);
/// an empty or overlong one is `invalid_reset_code` without a lookup.
fn reset_code_hash(code: &str) -> ChatResult<String> {
    let code = code.trim();
    if code.is_empty() || code.len() > 256 {
        return Err(ChatError::InvalidResetCode);
    }
    Ok(auth::hash_secret(code))
}

/// Bytes of the regular files under `dir` (0 when it does not exist). Symlinks are
/// not followed.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}
