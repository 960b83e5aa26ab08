//! Persistence. One small async trait, [`Store`], with one small error enum; the rest
//! of the server sees nothing of SQL. The three backends (SQLite, PostgreSQL,
//! MySQL/MariaDB) share one implementation written against sqlx's `Any` driver
//! ([`sql::SqlStore`]) because the queries are (nearly) the same; what differs per
//! backend (connection options, pragmas, migrations, session settings) lives in
//! `sqlite.rs`, `postgres.rs` and `mysql.rs`. [`Store::append`] takes a batch so the
//! chat pipeline can keep many messages in one transaction (one fsync).

pub mod blobs;
pub mod mysql;
pub mod postgres;
pub mod sql;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{MessageKind, Retention, RoomId, RoomKind, Seq, UserId};

/// What can go wrong in the store, as the layers above need to tell it apart.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken; the field is `email`, `username` or `room_name`.
    #[error("{0} is already taken")]
    Conflict(&'static str),
    #[error("not found")]
    NotFound,
    /// The database failed; the text is for the log, never for clients.
    #[error("database error: {0}")]
    Backend(String),
    /// The database cannot be reached right now (down, restarting, pool exhausted):
    /// nothing was written; the same request may be retried.
    #[error("database unreachable: {0}")]
    Unavailable(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e
            && db.is_unique_violation()
        {
            // PostgreSQL and SQLite name the constraint or column; MySQL's message
            // quotes the offending value before the key's name ("Duplicate entry
            // '…' for key 'users.username_lc'"): only the part naming the key counts.
            let msg = db.message();
            let msg = msg.rfind("for key ").map_or(msg, |i| &msg[i..]);
            let m = msg.to_string() + db.constraint().unwrap_or("");
            for (needle, field) in [("email_lc", "email"), ("username_lc", "username"), ("name_lc", "room_name")] {
                if m.contains(needle) {
                    return StoreError::Conflict(field);
                }
            }
            return StoreError::Conflict("value");
        }
        let unreachable = match &e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => true,
            // PostgreSQL: connection exceptions (08…), shutting down or starting up (57P…).
            // MySQL reports SQLSTATE 08S01 when the server shuts down, 08004 for too
            // many connections.
            sqlx::Error::Database(db) => db.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
            _ => false,
        };
        if unreachable {
            return StoreError::Unavailable(e.to_string());
        }
        StoreError::Backend(e.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Backend(format!("migration failed: {e}"))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// An account as the rest of the server sees it (no password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub username: String,
    pub first_name: String,
    pub last_name: String,
    pub is_admin: bool,
    pub disabled: bool,
    pub created_at: i64,
}

/// Fields of a new account, already validated and hashed.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub email_lc: String,
    pub username: String,
    pub username_lc: String,
    pub first_name: String,
    pub last_name: String,
    pub password_hash: String,
    pub now: i64,
}

/// Changes to a profile; `None` keeps the field.
#[derive(Debug, Clone, Default)]
pub struct ProfileChange {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<(String, String)>,
    pub username: Option<(String, String)>,
}

/// A signed-in browser session found by its token hash.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub user: User,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

/// A room or DM conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    pub id: RoomId,
    pub kind: RoomKind,
    pub name: Option<String>,
    pub topic: String,
    pub is_private: bool,
    /// Only the owner, moderators and the admin may send (moderation).
    pub read_only: bool,
    pub owner_id: Option<UserId>,
    pub retention: Retention,
    pub last_seq: Seq,
    pub created_at: i64,
    /// Archived by the admin: readable, nobody may send (checked from the room cache).
    pub archived: bool,
}

/// Fields of a new room, already validated.
#[derive(Debug, Clone)]
pub struct NewRoom {
    pub name: String,
    pub name_lc: String,
    pub topic: String,
    pub is_private: bool,
    pub owner_id: UserId,
    pub retention: Retention,
    pub now: i64,
}

/// One of a user's conversations, with what the hello frame needs.
#[derive(Debug, Clone)]
pub struct RoomSummary {
    pub room: Room,
    pub last_read_seq: Seq,
    /// Kept events after `last_read_seq` written by someone else.
    pub unread: i64,
    /// For a DM: the other person.
    pub peer: Option<User>,
    /// Kept messages after `last_read_seq` that mention the user.
    pub mentions: i64,
    /// The member's notification level (`all`, `mentions`, `muted`).
    pub notify: String,
    /// The member's role as stored: `member` or `moderator` (the owner is `owner_id`).
    pub role: String,
}

/// A room found by browsing or search.
#[derive(Debug, Clone)]
pub struct RoomListing {
    pub room: Room,
    pub member_count: i64,
    pub is_member: bool,
    /// The viewer is banned from it: a join would be refused.
    pub banned: bool,
}

/// A kept event as read back from the store. Text messages come with their current
/// state (edited, deleted, reactions); actions name the message they acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub room_id: RoomId,
    pub seq: Seq,
    pub author_id: UserId,
    pub author_username: String,
    pub kind: MessageKind,
    /// The text (a text or an edit), the emoji (a reaction), or empty.
    pub body: String,
    pub client_id: Option<String>,
    pub created_at: i64,
    /// Actions: the seq of the message acted on.
    pub target: Option<Seq>,
    /// Replies: what is quoted.
    pub reply_to: Option<ReplyRow>,
    /// When the text was last edited.
    pub edited_at: Option<i64>,
    /// The text was deleted (the body is empty).
    pub deleted: bool,
    /// Reactions in the order first given: (emoji, who).
    pub reactions: Vec<(String, Vec<UserId>)>,
    /// The people the text names with `<@ID>`, with their current usernames.
    pub mentions: Vec<(UserId, String)>,
    /// Texts: the files attached, in the order sent (issue 13).
    pub attachments: Vec<crate::domain::files::StoredFile>,
}

/// The message a reply quotes, as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyRow {
    pub seq: Seq,
    /// `None` when the original was deleted or is no longer kept.
    pub original: Option<(UserId, String, String)>,
}

/// An event to keep; the store assigns its sequence number.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub room_id: RoomId,
    pub author_id: UserId,
    pub kind: MessageKind,
    /// The text (text, edit), the emoji (react, unreact), or empty.
    pub body: String,
    pub client_id: Option<String>,
    pub created_at: i64,
    /// Actions: the seq of the message acted on (its effect is applied in the same
    /// transaction).
    pub target: Option<Seq>,
    /// Texts: the seq of the message replied to.
    pub reply_to: Option<Seq>,
    /// Texts and edits: the members to count a mention for (the author excluded).
    pub mentions: Vec<UserId>,
    /// Texts: ids of the sender's pending uploads in this room to attach, in order
    /// (checked by `chat::files`; attached in the same transaction).
    pub attachments: Vec<String>,
}

impl NewMessage {
    /// A plain event of `kind` (no target, reply or mentions).
    pub fn plain(room_id: RoomId, author_id: UserId, kind: MessageKind, body: String, created_at: i64) -> Self {
        NewMessage {
            room_id,
            author_id,
            kind,
            body,
            client_id: None,
            created_at,
            target: None,
            reply_to: None,
            mentions: Vec::new(),
            attachments: Vec::new(),
        }
    }
}

/// A member's stored role and mute, as the room cache needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRole {
    pub user: UserId,
    /// `member` or `moderator`.
    pub role: String,
    /// Muted until (ms), if a mute was ever set and not lifted (it may be past).
    pub muted_until: Option<i64>,
}

/// Which names a skeleton belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Username,
    RoomName,
}

impl NameKind {
    /// (table, name column, skeleton column)
    fn columns(self) -> (&'static str, &'static str, &'static str) {
        match self {
            NameKind::Username => ("users", "username", "username_skel"),
            NameKind::RoomName => ("rooms", "name", "name_skel"),
        }
    }
}

/// The outcome of keeping one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored with this new sequence number.
    New(Seq),
    /// The same author already sent this client id in this room: stored once, as `seq`.
    Duplicate(Seq),
}

impl Appended {
    pub fn seq(self) -> Seq {
        match self {
            Appended::New(s) | Appended::Duplicate(s) => s,
        }
    }
}

/// An API token as listed to its owner (never the token itself).
#[derive(Debug, Clone)]
pub struct ApiTokenInfo {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// How the admin's user list is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserSort {
    /// Most recently seen first; never-seen accounts last.
    LastSeen,
    /// By username, A to Z.
    Name,
    /// Newest account first.
    Created,
}

/// An account as the admin console lists it.
#[derive(Debug, Clone)]
pub struct AdminUser {
    pub user: User,
    /// Last sign-in or socket close (ms), if ever.
    pub last_seen: Option<i64>,
}

/// A room (not a DM) as the admin console lists it.
#[derive(Debug, Clone)]
pub struct AdminRoom {
    pub room: Room,
    pub owner_username: Option<String>,
    pub members: i64,
}

/// An audit entry to record. `actor` None: the CLI.
#[derive(Debug, Clone)]
pub struct NewAudit {
    pub ts: i64,
    pub actor: Option<UserId>,
    pub action: String,
    pub target: String,
    /// A JSON object.
    pub detail: String,
}

/// A recorded audit entry; `actor` is (id, current username) unless the CLI acted.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub id: i64,
    pub ts: i64,
    pub actor: Option<(UserId, String)>,
    pub action: String,
    pub target: String,
    pub detail: String,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    // Accounts.
    async fn create_user(&self, u: NewUser) -> StoreResult<User>;
    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<User>>;
    /// Finds an account by folded email or folded username, with its password hash.
    async fn user_for_login(&self, login_lc: &str) -> StoreResult<Option<(User, String)>>;
    async fn password_hash(&self, id: UserId) -> StoreResult<Option<String>>;
    /// Accounts by username, those matching `query` (name or username) if given; only
    /// enabled ones if `enabled_only` (the directory: its limit counts what it shows).
    async fn list_users(&self, query: Option<&str>, limit: i64, enabled_only: bool) -> StoreResult<Vec<User>>;
    async fn update_profile(&self, id: UserId, change: ProfileChange) -> StoreResult<User>;
    async fn set_password(&self, id: UserId, hash: &str) -> StoreResult<()>;
    async fn set_disabled(&self, id: UserId, disabled: bool) -> StoreResult<()>;
    /// Ids of every disabled account (polled, so a CLI change reaches running nodes).
    async fn disabled_user_ids(&self) -> StoreResult<Vec<UserId>>;

    // Sessions and tokens (all by SHA-256 of the secret).
    async fn create_session(&self, hash: &str, user: UserId, now: i64, expires_at: i64) -> StoreResult<()>;
    async fn session(&self, hash: &str) -> StoreResult<Option<SessionRow>>;
    async fn touch_session(&self, hash: &str, now: i64) -> StoreResult<()>;
    async fn delete_session(&self, hash: &str) -> StoreResult<()>;
    /// Deletes every session of a user but `keep`.
    async fn delete_user_sessions(&self, user: UserId, keep: Option<&str>) -> StoreResult<()>;
    /// The token hashes of a user's sessions.
    async fn session_hashes(&self, user: UserId) -> StoreResult<Vec<String>>;
    /// Deletes up to `limit` sessions past their absolute expiry; returns (user, hash).
    async fn take_expired_sessions(&self, now: i64, limit: i64) -> StoreResult<Vec<(UserId, String)>>;
    async fn create_api_token(&self, user: UserId, name: &str, hash: &str, now: i64) -> StoreResult<i64>;
    async fn api_token_user(&self, hash: &str, now: i64) -> StoreResult<Option<(User, i64)>>;
    async fn list_api_tokens(&self, user: UserId) -> StoreResult<Vec<ApiTokenInfo>>;
    async fn delete_api_token(&self, user: UserId, id: i64) -> StoreResult<bool>;
    async fn create_invite(&self, hash: &str, by: UserId, now: i64, expires_at: i64) -> StoreResult<()>;
    /// Marks an unused, unexpired invite used; false if there is none such.
    async fn claim_invite(&self, hash: &str, now: i64) -> StoreResult<bool>;
    async fn release_invite(&self, hash: &str) -> StoreResult<()>;
    async fn get_setting(&self, key: &str) -> StoreResult<Option<String>>;
    async fn set_setting(&self, key: &str, value: &str) -> StoreResult<()>;

    // The admin console (issue 15; `admin_sql.rs`).
    /// A page of accounts matching `query` (username, email or names), and how many match.
    async fn admin_list_users(
        &self,
        query: Option<&str>,
        sort: UserSort,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<AdminUser>, i64)>;
    /// Sets the admin flag; clearing it is refused (false) when no other enabled admin
    /// would remain. `NotFound` when there is no such account.
    async fn set_admin(&self, id: UserId, admin: bool) -> StoreResult<bool>;
    /// Disables an account unless it is the last enabled admin (false then), checked
    /// and written under one lock. `NotFound` when there is no such account.
    async fn disable_unless_last_admin(&self, id: UserId) -> StoreResult<bool>;
    async fn touch_last_seen(&self, id: UserId, now: i64) -> StoreResult<()>;
    async fn create_password_reset(
        &self,
        hash: &str,
        user: UserId,
        by: Option<UserId>,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<()>;
    /// Spends an unused, unexpired reset code; the account it is for.
    async fn claim_password_reset(&self, hash: &str, now: i64) -> StoreResult<Option<UserId>>;
    /// Whether a reset code is unused and unexpired (nothing is spent).
    async fn password_reset_usable(&self, hash: &str, now: i64) -> StoreResult<bool>;
    /// A page of rooms (not DMs) matching `query`, with owners and member counts.
    async fn admin_list_rooms(
        &self,
        query: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<AdminRoom>, i64)>;
    /// False when there is no such room (DMs are not archived).
    async fn set_archived(&self, room: RoomId, archived: bool) -> StoreResult<bool>;
    /// Deletes a room and everything in it; its members then, or None if no such room.
    async fn delete_room(&self, room: RoomId) -> StoreResult<Option<Vec<UserId>>>;
    async fn append_audit(&self, entry: NewAudit) -> StoreResult<()>;
    /// Up to `limit` audit entries with an id below `before`, newest first.
    async fn audit(&self, before: Option<i64>, limit: i64) -> StoreResult<Vec<AuditRow>>;
    /// Deletes audit entries older than `older_than` (ms); returns how many.
    async fn prune_audit(&self, older_than: i64) -> StoreResult<u64>;
    /// The newest audit entry's id (0 when none).
    async fn audit_max_id(&self) -> StoreResult<i64>;
    /// Up to `limit` entries the CLI recorded (no actor) after id `after`, oldest first.
    async fn cli_audit_after(&self, after: i64, limit: i64) -> StoreResult<Vec<AuditRow>>;
    /// (accounts, rooms other than DMs).
    async fn counts(&self) -> StoreResult<(i64, i64)>;
    /// The database's size, where the backend tells it cheaply.
    async fn database_bytes(&self) -> StoreResult<Option<i64>>;
    /// `sqlite`, `postgres` or `mysql`.
    fn backend_name(&self) -> &'static str;

    // Rooms and memberships.
    /// Creates a room with its owner as first member.
    async fn create_room(&self, r: NewRoom) -> StoreResult<Room>;
    async fn room(&self, id: RoomId) -> StoreResult<Option<Room>>;
    async fn update_room(&self, id: RoomId, topic: &str, retention: Retention) -> StoreResult<()>;
    /// Hands a room to another member.
    async fn set_owner(&self, id: RoomId, owner: UserId) -> StoreResult<()>;
    /// A member's read marker, or None when not a member.
    async fn read_marker(&self, room: RoomId, user: UserId) -> StoreResult<Option<Seq>>;
    async fn search_rooms(&self, viewer: UserId, query: Option<&str>, limit: i64) -> StoreResult<Vec<RoomListing>>;
    /// The DM of two people, created (with both as members) on first use.
    async fn dm_room(&self, a: UserId, b: UserId, retention: Retention, now: i64) -> StoreResult<Room>;
    /// Adds a member; returns (newly added, first time ever in this room).
    async fn add_member(&self, room: RoomId, user: UserId, now: i64) -> StoreResult<(bool, bool)>;
    async fn remove_member(&self, room: RoomId, user: UserId) -> StoreResult<bool>;
    async fn is_member(&self, room: RoomId, user: UserId) -> StoreResult<bool>;
    async fn members(&self, room: RoomId) -> StoreResult<Vec<User>>;
    async fn user_rooms(&self, user: UserId) -> StoreResult<Vec<RoomSummary>>;
    /// One of the user's rooms as [`Store::user_rooms`] gives it; `None` when not a
    /// member.
    async fn user_room(&self, user: UserId, room: RoomId) -> StoreResult<Option<RoomSummary>>;
    /// Moves `user`'s marker forward to `seq` (never past the last event) and returns
    /// it. `dm`: the room is a DM, where the read also deletes what it lets the
    /// retention take (read now, and past the cut), before it returns.
    async fn mark_read(&self, room: RoomId, user: UserId, seq: Seq, dm: bool) -> StoreResult<Seq>;
    /// Sets a member's notification level; false when not a member.
    async fn set_notify(&self, room: RoomId, user: UserId, level: &str) -> StoreResult<bool>;

    // Messages.
    /// Keeps a batch of events in ONE transaction, applying each room's "last N" policy
    /// and each action's effect on its target (an edit of a message deleted meanwhile
    /// is kept with an empty text).
    async fn append(&self, batch: &[NewMessage]) -> StoreResult<Vec<Appended>>;
    /// Up to `limit` kept messages and notices before `before` (or the newest), oldest
    /// first, in their current state; actions are left out (their effect is shown).
    async fn history(&self, room: RoomId, before: Option<Seq>, limit: i64) -> StoreResult<Vec<StoredMessage>>;
    /// Up to `limit` kept events after `after`, oldest first.
    async fn since(&self, room: RoomId, after: Seq, limit: i64) -> StoreResult<Vec<StoredMessage>>;
    /// Kept, undeleted text messages matching `query` in the rooms and DMs `viewer` is a
    /// member of now (optionally one room, one author), newest first.
    async fn search(
        &self,
        viewer: UserId,
        query: &crate::domain::search::SearchQuery,
        room: Option<RoomId>,
        author: Option<UserId>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<StoredMessage>>;
    /// Up to `limit` live text messages kept before full-text search existed, to index:
    /// (room, seq, text).
    async fn unindexed_texts(&self, limit: i64) -> StoreResult<Vec<(RoomId, Seq, String)>>;
    /// Records a message's folded text for search.
    async fn set_search_text(&self, room: RoomId, seq: Seq, folded: &str) -> StoreResult<()>;
    /// Up to `limit` live text messages after `after` in (room, seq) order, with their
    /// search text as stored: (room, seq, text, search text).
    async fn search_texts_after(
        &self,
        after: (RoomId, Seq),
        limit: i64,
    ) -> StoreResult<Vec<(RoomId, Seq, String, Option<String>)>>;
    /// How many kept events come at or before `at` in (room, seq) order, and how many
    /// there are: the progress of a job that walks them in that order (the console).
    async fn events_upto(&self, at: (RoomId, Seq)) -> StoreResult<(i64, i64)>;
    /// Replaces messages' search texts, each only if it is still the old one given
    /// (an edit meanwhile wrote a newer one): (room, seq, old, new), one transaction.
    async fn replace_search_texts(&self, rows: &[(RoomId, Seq, String, String)]) -> StoreResult<()>;
    /// One kept event with its current state, if it is still kept.
    async fn message(&self, room: RoomId, seq: Seq) -> StoreResult<Option<StoredMessage>>;
    // Look-alike names.
    /// A username (or room name) of another user or room than `except` with this
    /// skeleton, if any.
    async fn skeleton_taken(&self, kind: NameKind, skeleton: &str, except: Option<i64>) -> StoreResult<Option<String>>;
    /// Records the skeleton of a user's username (or a room's name).
    async fn set_skeleton(&self, kind: NameKind, id: i64, skeleton: &str) -> StoreResult<()>;
    /// Up to `limit` users (or rooms) whose name has no skeleton yet: (id, name).
    async fn missing_skeletons(&self, kind: NameKind, limit: i64) -> StoreResult<Vec<(i64, String)>>;

    /// The newest seq of each of `rooms` that exists (any order).
    async fn last_seqs(&self, rooms: &[RoomId]) -> StoreResult<Vec<(RoomId, Seq)>>;
    /// The oldest kept sequence number of a room, if any event is kept.
    async fn earliest_seq(&self, room: RoomId) -> StoreResult<Option<Seq>>;
    async fn count_messages(&self, room: RoomId) -> StoreResult<i64>;
    /// Deletes events older than their room's keep-days; returns how many.
    async fn prune_expired(&self, now: i64) -> StoreResult<u64>;

    // Moderation (issue 15; `moderation_sql.rs`).
    /// Each member of a room with their stored role and mute (until, ms; maybe past).
    async fn member_roles(&self, room: RoomId) -> StoreResult<Vec<MemberRole>>;
    /// Sets a member's role (`member` or `moderator`); false when not a member.
    async fn set_role(&self, room: RoomId, user: UserId, role: &str) -> StoreResult<bool>;
    /// Bans a user from a room and ends their membership, in one transaction; returns
    /// whether they were a member.
    async fn ban(&self, room: RoomId, user: UserId, by: UserId, now: i64) -> StoreResult<bool>;
    /// Lifts a ban; false when there was none.
    async fn unban(&self, room: RoomId, user: UserId) -> StoreResult<bool>;
    async fn is_banned(&self, room: RoomId, user: UserId) -> StoreResult<bool>;
    /// The people banned from a room, by username.
    async fn bans(&self, room: RoomId) -> StoreResult<Vec<User>>;
    /// Mutes a user in a room until `until` (ms), replacing an earlier mute.
    async fn mute(&self, room: RoomId, user: UserId, until: i64) -> StoreResult<()>;
    /// Lifts a mute; false when there was none.
    async fn unmute(&self, room: RoomId, user: UserId) -> StoreResult<bool>;
    async fn set_read_only(&self, room: RoomId, read_only: bool) -> StoreResult<()>;
    /// Renames a room (`room_name` conflict when the folded name is taken).
    async fn rename_room(&self, room: RoomId, name: &str, name_lc: &str) -> StoreResult<()>;
    /// `user` blocks `other`; false when it was so already (no change).
    async fn block(&self, user: UserId, other: UserId, now: i64) -> StoreResult<bool>;
    /// False when `user` had not blocked `other`.
    async fn unblock(&self, user: UserId, other: UserId) -> StoreResult<bool>;
    /// The people `user` blocked, by username.
    async fn blocks(&self, user: UserId) -> StoreResult<Vec<User>>;
    /// Ids of the people `user` blocked.
    async fn blocked_ids(&self, user: UserId) -> StoreResult<Vec<UserId>>;
    /// Whether either of two people blocked the other.
    async fn blocked_either(&self, a: UserId, b: UserId) -> StoreResult<bool>;
    /// The DM of two people, if it exists (never created here).
    async fn dm_between(&self, a: UserId, b: UserId) -> StoreResult<Option<RoomId>>;
    /// A user's mute in a room (until, ms; maybe past), member or not.
    async fn muted_until(&self, room: RoomId, user: UserId) -> StoreResult<Option<i64>>;
    /// A member's stored role (`member` or `moderator`), or None when not a member.
    async fn member_role(&self, room: RoomId, user: UserId) -> StoreResult<Option<String>>;

    /// Bounds what a DM holds unread for its recipient (0: no bound): past `cap`
    /// events, the oldest go even if unread.
    fn set_max_held_dms(&self, _cap: i64) {}

    /// Periodic upkeep of the backend, called by the server's housekeeping every few
    /// seconds (SQLite: WAL checkpoints, kept off the write path).
    async fn maintain(&self) -> StoreResult<()> {
        Ok(())
    }

    /// Applies the search index's queue where the backend has one (SQLite, migration
    /// 0008; elsewhere the index changes with each write). Called every 250 ms by the
    /// server; a search applies it first anyway. Returns the rows applied.
    async fn index_search(&self) -> StoreResult<u64> {
        Ok(0)
    }

    // Files (issue 13; `files_sql.rs`).
    /// Keeps a new upload's row (pending: no seq).
    async fn insert_file(&self, f: &crate::domain::files::StoredFile) -> StoreResult<()>;
    /// Bytes of every file `user` uploaded and still kept (pending or attached).
    async fn user_file_bytes(&self, user: UserId) -> StoreResult<i64>;
    /// A file `viewer` may read now: in a room they are a member of, and attached to a
    /// message or pending and theirs.
    async fn readable_file(&self, id: &str, viewer: UserId) -> StoreResult<Option<crate::domain::files::StoredFile>>;
    /// Whether `author` already sent `client_id` in `room` (a message kept, deleted or not).
    async fn client_id_used(&self, room: RoomId, author: UserId, client_id: &str) -> StoreResult<bool>;
    /// Files by id, each with the client id of the message it is attached to, if any.
    async fn files_by_ids(
        &self,
        ids: &[String],
    ) -> StoreResult<Vec<(crate::domain::files::StoredFile, Option<String>)>>;
    /// Which of `hashes` some row still names, as a file or a thumbnail.
    async fn referenced_hashes(&self, hashes: &[String]) -> StoreResult<Vec<String>>;
    /// Deletes pending uploads made before `before` (ms); returns how many.
    async fn delete_pending_files(&self, before: i64) -> StoreResult<u64>;
}

pub type DynStore = Arc<dyn Store>;

/// Opens the store a URL names (`sqlite:`, `postgres:` or `mysql:`) and brings its schema up to date.
pub async fn connect(url: &str, pool_size: u32) -> StoreResult<DynStore> {
    connect_with(url, pool_size, sqlite::Durability::Normal).await
}

/// [`connect`] with SQLite's `--durability` (the other databases have their own
/// server-side settings).
pub async fn connect_with(url: &str, pool_size: u32, durability: sqlite::Durability) -> StoreResult<DynStore> {
    sqlx::any::install_default_drivers();
    let store = if url.starts_with("sqlite:") {
        sqlite::open(url, pool_size, durability).await?
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        postgres::open(url, pool_size).await?
    } else if url.starts_with("mysql:") || url.starts_with("mariadb:") {
        mysql::open(url, pool_size).await?
    } else {
        return Err(StoreError::Backend("unsupported database URL: use sqlite:PATH, postgres://… or mysql://…".into()));
    };
    store.fill_search_folds().await?;
    tracing::info!(backend = ?store.backend, "store ready");
    Ok(Arc::new(store))
}
