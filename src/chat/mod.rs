//! The use cases, and the ONLY place business rules live: who may sign up, sign in,
//! join, read, post or see whom; what is kept and for how long; what is live only.
//! HTTP and WebSocket handlers call [`Chat`] and nothing below it; `Chat` drives the
//! store (persistence), the bus (delivery to every node) and the hasher.

mod accounts;
mod admin;
mod cluster;
pub mod files;
mod messages;
mod moderation;
mod pipeline;
mod presence;
mod rooms;
mod search;

pub use accounts::{LoginOutcome, NewAccount, ProfileUpdate};
pub use admin::{ResetLink, ServerFacts, page};
pub use messages::{Resume, SendReceipt};
pub use moderation::{BanRequest, MAX_MUTE_MINUTES, MuteRequest, RoleChange};
pub use rooms::{CreateRoom, MemberView, RoomUpdate};
pub use search::{SearchHit, reindex as reindex_search_words};

use std::{
    num::NonZeroU32,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::{
    auth::Hasher,
    bus::{BusError, DynBus},
    config::{Config, RegistrationMode},
    domain::{DomainError, UserId},
    hub::{Envelope, Topic},
    store::{DynStore, NameKind, StoreError, User},
    ws::protocol::{Author, Limits},
};

/// What went wrong in a use case, in terms a client can act on. Each variant has a
/// stable `code()`; `error.rs` maps them to HTTP statuses.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("{0}")]
    Invalid(#[from] DomainError),
    #[error("that {} is already taken", .0.replace('_', " "))]
    Taken(&'static str),
    #[error("wrong email/username or password")]
    BadCredentials,
    #[error("sign in first")]
    Unauthenticated,
    #[error("this account is disabled")]
    Disabled,
    #[error("registration is closed on this server")]
    RegistrationClosed,
    #[error("this invite link is not valid (used, expired or mistyped)")]
    InvalidInvite,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("you are not a member of this room")]
    NotMember,
    /// The person a moderator acts on is not a member (same code as `NotMember`).
    #[error("that person is not a member of this room")]
    SubjectNotMember,
    /// Muted in this room until this time (ms).
    #[error("you are muted in this room")]
    Muted(i64),
    #[error("this room is read-only: only its owner and moderators may post")]
    ReadOnly,
    #[error("you are banned from this room")]
    Banned,
    #[error("one of you blocked the other")]
    Blocked,
    #[error("slow down: too many requests")]
    RateLimited,
    /// Too many sign-in attempts at this account lately: try again in this many
    /// seconds (or from a browser that signed in to it before).
    #[error("too many sign-in attempts for this account; try again in {0} s")]
    SignInDelayed(u64),
    /// The name looks like an existing one (same TR39 skeleton): `username` or
    /// `room_name`.
    #[error("that {0} looks too much like an existing one; choose another")]
    LookAlike(&'static str),
    /// The admin console: the change would leave no enabled admin.
    #[error("this would leave the server without an admin")]
    LastAdmin,
    #[error("this password reset link is not valid (used, expired or mistyped)")]
    InvalidResetCode,
    #[error("this room is archived: it can be read, not written to")]
    RoomArchived,
    #[error("the database is unreachable right now; nothing was changed, try again shortly")]
    Unavailable,
    /// Files and images (`files.rs`).
    #[error("{0}")]
    File(#[from] files::FileError),
    #[error("internal error")]
    Internal(String),
}

impl ChatError {
    /// The stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ChatError::Invalid(e) => e.code,
            ChatError::Taken("email") => "email_taken",
            ChatError::Taken("username") => "username_taken",
            ChatError::Taken("room_name") => "room_name_taken",
            ChatError::Taken(_) => "conflict",
            ChatError::BadCredentials => "invalid_credentials",
            ChatError::Unauthenticated => "unauthenticated",
            ChatError::Disabled => "account_disabled",
            ChatError::RegistrationClosed => "registration_closed",
            ChatError::InvalidInvite => "invalid_invite",
            ChatError::Forbidden(_) => "forbidden",
            ChatError::NotFound("room") => "room_not_found",
            ChatError::NotFound("user") => "user_not_found",
            ChatError::NotFound("message") => "message_not_found",
            ChatError::NotFound(_) => "not_found",
            ChatError::NotMember | ChatError::SubjectNotMember => "not_a_member",
            ChatError::Muted(_) => "muted",
            ChatError::ReadOnly => "read_only",
            ChatError::Banned => "banned",
            ChatError::Blocked => "blocked",
            ChatError::RateLimited => "rate_limited",
            ChatError::SignInDelayed(_) => "sign_in_delayed",
            ChatError::LookAlike("username") => "username_look_alike",
            ChatError::LookAlike(_) => "room_name_look_alike",
            ChatError::LastAdmin => "last_admin",
            ChatError::InvalidResetCode => "invalid_reset_code",
            ChatError::RoomArchived => "room_archived",
            ChatError::Unavailable => "unavailable",
            ChatError::File(e) => e.code(),
            ChatError::Internal(_) => "internal",
        }
    }

    /// The message safe to show a client (internals stay in the log).
    pub fn public_message(&self) -> String {
        match self {
            ChatError::Internal(_) => "something went wrong on the server; it has been logged".into(),
            other => other.to_string(),
        }
    }
}

impl From<StoreError> for ChatError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(f) => ChatError::Taken(f),
            StoreError::NotFound => ChatError::NotFound("item"),
            StoreError::Backend(m) => ChatError::Internal(m),
            StoreError::Unavailable(m) => {
                tracing::warn!(error = %m, "database unreachable");
                ChatError::Unavailable
            }
        }
    }
}

impl From<BusError> for ChatError {
    fn from(e: BusError) -> Self {
        ChatError::Internal(e.to_string())
    }
}

pub type ChatResult<T> = Result<T, ChatError>;

/// Who is acting: the signed-in user and how they proved it.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user: User,
    /// SHA-256 of the session token, for cookie sessions.
    pub session: Option<String>,
    /// The API token's id, for bearer tokens.
    pub token_id: Option<i64>,
}

impl Actor {
    pub fn author(&self) -> Author {
        Author { id: self.user.id, username: self.user.username.clone() }
    }
}

/// The limits and policies `Chat` enforces, taken from the config.
#[derive(Debug, Clone)]
pub struct Policy {
    pub max_message_chars: usize,
    pub max_frame_bytes: usize,
    pub messages_per_10s: u32,
    pub social_per_min: u32,
    pub default_keep_messages: i64,
    pub session_idle_ms: i64,
    pub session_max_ms: i64,
    pub outbox_frames: usize,
    pub origin: String,
    /// Days the audit log keeps an entry (`--audit-keep-days`).
    pub audit_keep_days: i64,
    /// Sign-in/sign-up attempts per client address per minute.
    pub auth_per_min: u32,
    /// API tokens one account may hold.
    pub max_api_tokens: usize,
    /// The per-account sign-in back-off (`auth::backoff`).
    pub sign_in: crate::auth::backoff::Rule,
    /// Uploads: largest file, quota, accepted types, where blobs live.
    pub files: files::FilePolicy,
    /// A serving node keeps the data tidy in the background (the file sweeper, the
    /// search backfill) and makes the files directory. A one-shot CLI command does
    /// neither: it would sweep in a process that may exit mid-sweep, and create the
    /// directories as whoever ran it (often root).
    pub housekeeping: bool,
}

impl Policy {
    pub fn from_config(c: &Config) -> Self {
        Policy {
            max_message_chars: c.max_message_chars,
            max_frame_bytes: c.max_frame_bytes,
            messages_per_10s: c.rate_messages_per_10s.max(1),
            social_per_min: c.rate_social_per_min.max(1),
            default_keep_messages: c.default_keep_messages,
            session_idle_ms: c.session_idle_secs * 1000,
            session_max_ms: c.session_max_secs * 1000,
            outbox_frames: c.outbox_frames,
            origin: c.origin(),
            audit_keep_days: c.audit_keep_days,
            auth_per_min: c.auth_rate_per_min.max(1),
            max_api_tokens: c.max_api_tokens,
            files: files::FilePolicy::from_config(c),
            housekeeping: true,
            sign_in: crate::auth::backoff::Rule {
                free: c.sign_in_free_failures,
                base: Duration::from_secs(1),
                max: Duration::from_secs(c.sign_in_max_delay_secs.max(1)),
                // Long enough that a patient guesser (one try per wait) stays at the cap.
                forget: Duration::from_secs(c.sign_in_max_delay_secs.max(1) * 3).max(Duration::from_secs(900)),
            },
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_message_chars: self.max_message_chars,
            max_frame_bytes: self.max_frame_bytes,
            messages_per_10s: self.messages_per_10s,
        }
    }
}

pub struct Chat {
    pub(crate) store: DynStore,
    /// Uploaded files' blobs and their sweeper (`files.rs`).
    files: files::Files,
    pub(crate) bus: DynBus,
    hasher: Hasher,
    pub policy: Policy,
    pipeline: pipeline::Pipeline,
    rooms: rooms::RoomCache,
    send_limiter: DefaultKeyedRateLimiter<UserId>,
    /// Typing notices per user: excess ones are dropped (they are only a hint), so a
    /// client cannot turn a room into an amplifier.
    typing_limiter: DefaultKeyedRateLimiter<UserId>,
    /// Rooms created, invitations and DMs opened per user.
    social_limiter: DefaultKeyedRateLimiter<UserId>,
    /// History and resume reads per user: each costs a query. The burst covers a
    /// client resuming every room of a large account at once after a reconnect.
    read_limiter: DefaultKeyedRateLimiter<UserId>,
    registration: parking_lot::RwLock<RegistrationMode>,
    /// Client ids recently delivered in ephemeral rooms (dedup without a store).
    ephemeral_seen: messages::RecentIds,
    /// Sign-in attempts per account (and per known device) on this node; with several
    /// nodes the bus keeps the shared count and this is the fallback.
    sign_in_backoff: crate::auth::backoff::Table,
    /// Disabled accounts already seen by housekeeping.
    known_disabled: parking_lot::Mutex<std::collections::HashSet<UserId>>,
    /// Big rooms' presence changes waiting for their window (`presence.rs`).
    presence_batch: presence::Batcher,
    /// When this node started (the console's uptime).
    started: std::time::Instant,
    /// The newest audit entry this node has looked at for CLI actions (`admin.rs`).
    cli_seen: std::sync::atomic::AtomicI64,
}

const REGISTRATION_KEY: &str = "registration_mode";

impl Chat {
    /// Builds the use-case layer and settles the registration mode (the flag wins over
    /// what is stored; a new database starts open).
    pub async fn new(
        store: DynStore,
        bus: DynBus,
        policy: Policy,
        hash_concurrency: usize,
        registration_flag: Option<RegistrationMode>,
    ) -> ChatResult<Arc<Self>> {
        let mode = match registration_flag {
            Some(m) => {
                store.set_setting(REGISTRATION_KEY, m.as_str()).await?;
                m
            }
            None => store
                .get_setting(REGISTRATION_KEY)
                .await?
                .and_then(|s| RegistrationMode::parse(&s))
                .unwrap_or(RegistrationMode::Open),
        };
        Self::backfill_skeletons(&store).await?;
        if policy.housekeeping {
            search::backfill_in_background(store.clone());
            search::reindex_in_background(store.clone());
            search::index_in_background(store.clone());
        }
        // CLI actions from before this node started left nothing stale here.
        let cli_seen = store.audit_max_id().await?;
        let social = policy.social_per_min;
        let sign_in = policy.sign_in;
        let per = NonZeroU32::new(policy.messages_per_10s).unwrap_or(NonZeroU32::MIN);
        let quota =
            Quota::with_period(Duration::from_millis(10_000 / u64::from(per.get())).max(Duration::from_micros(1)))
                .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
                .allow_burst(per);
        let files_poke = Arc::new(tokio::sync::Notify::new());
        let files = files::Files::open(&policy.files, policy.housekeeping, files_poke.clone()).await?;
        let chat = Arc::new(Chat {
            pipeline: pipeline::Pipeline::start(store.clone(), bus.clone(), files_poke.clone()),
            files,
            store,
            bus,
            hasher: Hasher::new(hash_concurrency),
            policy,
            rooms: rooms::RoomCache::default(),
            send_limiter: RateLimiter::keyed(quota),
            social_limiter: RateLimiter::keyed(
                Quota::per_minute(NonZeroU32::new(social).unwrap_or(NonZeroU32::MIN))
                    .allow_burst(NonZeroU32::new(social).unwrap_or(NonZeroU32::MIN)),
            ),
            typing_limiter: RateLimiter::keyed(
                Quota::per_second(NonZeroU32::MIN).allow_burst(NonZeroU32::new(3).unwrap_or(NonZeroU32::MIN)),
            ),
            read_limiter: RateLimiter::keyed(
                Quota::per_second(NonZeroU32::new(100).unwrap_or(NonZeroU32::MIN))
                    .allow_burst(NonZeroU32::new(1000).unwrap_or(NonZeroU32::MIN)),
            ),
            registration: parking_lot::RwLock::new(mode),
            sign_in_backoff: crate::auth::backoff::Table::new(sign_in),
            known_disabled: parking_lot::Mutex::new(Default::default()),
            ephemeral_seen: Default::default(),
            presence_batch: Default::default(),
            started: std::time::Instant::now(),
            cli_seen: std::sync::atomic::AtomicI64::new(cli_seen),
        });
        // The bus reports what other nodes did (several nodes only); it holds the
        // chat weakly, since the chat owns it.
        let weak: std::sync::Weak<Chat> = Arc::downgrade(&chat);
        chat.bus.attach(weak);
        if chat.policy.housekeeping {
            files::spawn_sweeper(Arc::downgrade(&chat), files_poke);
        }
        Ok(chat)
    }

    pub fn store(&self) -> &DynStore {
        &self.store
    }

    async fn publish(&self, topic: Topic, frame: &crate::ws::protocol::ServerFrame) -> ChatResult<()> {
        self.bus.publish(Envelope::frame(topic, frame.encode())).await?;
        Ok(())
    }

    /// The sign-in/sign-up budget of a client address that all nodes share (a no-op
    /// on one node, where the caller's own limiter is the whole budget).
    pub async fn check_shared_auth_budget(&self, ip: std::net::IpAddr) -> ChatResult<()> {
        self.take_shared_budget(|| format!("auth:{ip}"), self.policy.auth_per_min, 60_000).await
    }

    /// One unit of a budget all nodes share, on top of this node's own limiter. On
    /// one node it costs nothing (no key is even formatted: sends pass here); if Redis
    /// cannot answer, the node's own limiter is all there is.
    async fn take_shared_budget(&self, key: impl FnOnce() -> String, limit: u32, window_ms: u64) -> ChatResult<()> {
        if self.bus.shared() && self.bus.take_shared(&key(), limit, window_ms).await == Some(false) {
            return Err(ChatError::RateLimited);
        }
        Ok(())
    }

    /// Refuses a name whose TR39 skeleton another user's (or room's) name has (`aIice`
    /// beside `alice`); returns the skeleton to record. Two look-alikes signing up at
    /// the same moment can both pass: the exact-name uniqueness still holds.
    async fn check_look_alike(&self, kind: NameKind, name: &str, except: Option<i64>) -> ChatResult<String> {
        let skeleton = crate::domain::skeleton_key(name);
        let field = match kind {
            NameKind::Username => "username",
            NameKind::RoomName => "room_name",
        };
        match self.store.skeleton_taken(kind, &skeleton, except).await? {
            // The very same name (ignoring case) is simply taken.
            Some(other) if other.to_lowercase() == name.to_lowercase() => Err(ChatError::Taken(field)),
            Some(_) => Err(ChatError::LookAlike(field)),
            None => Ok(skeleton),
        }
    }

    /// Records the skeletons of names created before they were kept (an upgrade).
    async fn backfill_skeletons(store: &DynStore) -> ChatResult<()> {
        for kind in [NameKind::Username, NameKind::RoomName] {
            loop {
                let rows = store.missing_skeletons(kind, 1000).await?;
                if rows.is_empty() {
                    break;
                }
                for (id, name) in rows {
                    store.set_skeleton(kind, id, &crate::domain::skeleton_key(&name)).await?;
                }
            }
        }
        Ok(())
    }

    fn check_social(&self, actor: &Actor) -> ChatResult<()> {
        self.social_limiter.check_key(&actor.user.id).map_err(|_| ChatError::RateLimited)
    }

    /// Periodic upkeep: closes sockets of accounts disabled elsewhere (the CLI, another
    /// node) and forgets idle rate-limiter keys.
    pub async fn housekeeping(&self) -> ChatResult<()> {
        self.send_limiter.retain_recent();
        self.typing_limiter.retain_recent();
        self.social_limiter.retain_recent();
        self.read_limiter.retain_recent();
        self.sign_in_backoff.retain_recent();
        // A failed checkpoint must not stop the sweeps below (disabled accounts,
        // expired sessions); the next tick tries again.
        if let Err(e) = self.store.maintain().await {
            tracing::warn!(error = %e, "store upkeep failed");
        }
        // What `rtm` did from the shell (it cannot reach this node's sockets or caches).
        if let Err(e) = self.apply_cli_actions().await {
            tracing::warn!(error = %e, "cannot apply admin actions made with the CLI");
        }
        let now: std::collections::HashSet<UserId> = self.store.disabled_user_ids().await?.into_iter().collect();
        let newly: Vec<UserId> = {
            let mut known = self.known_disabled.lock();
            let newly = now.difference(&known).copied().collect();
            *known = now;
            newly
        };
        // Sockets opened with a session that has since passed its absolute expiry close
        // (an open socket counts as use, so the idle limit does not apply to it).
        for (user, hash) in self.store.take_expired_sessions(now_ms(), 1000).await? {
            self.bus.publish(Envelope::control(Topic::User(user), crate::hub::Control::EndSession(hash), None)).await?;
        }
        for user in newly {
            self.bus.publish(Envelope::control(Topic::User(user), crate::hub::Control::EndAll, None)).await?;
        }
        Ok(())
    }

    /// Whether this node can serve: the database answers within a second (a load
    /// balancer's probe must not hang while the database is down). Returns the bus
    /// state: `local` (one node), `up` or `down` (several nodes: Redis unreachable
    /// means other nodes' events arrive late, and are repaired when it is back).
    pub async fn check_health(&self) -> ChatResult<&'static str> {
        match tokio::time::timeout(Duration::from_secs(1), self.store.get_setting(REGISTRATION_KEY)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "health check: the database failed");
                return Err(ChatError::Unavailable);
            }
            Err(_) => {
                tracing::warn!("health check: the database did not answer within 1 s");
                return Err(ChatError::Unavailable);
            }
        }
        Ok(self.bus.health())
    }

    /// Deletes what fell out of keep-days policies.
    pub async fn prune(&self) -> ChatResult<u64> {
        // The audit log has its own retention (`--audit-keep-days`).
        if let Err(e) = self.prune_audit().await {
            tracing::warn!(error = %e, "pruning the audit log failed");
        }
        let n = self.store.prune_expired(now_ms()).await?;
        if n > 0 {
            self.files_changed();
            tracing::info!(deleted = n, "pruned expired messages");
        }
        Ok(n)
    }
}

/// Wall-clock time in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
