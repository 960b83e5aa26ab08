//! Server configuration: one documented clap struct, every flag with an `RTM_*`
//! environment fallback. `Debug` redacts the database password so the config can be
//! logged at start-up.

use std::{fmt, net::SocketAddr, path::PathBuf};

use clap::{Args, ValueEnum};

/// Who may create an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationMode {
    /// Anyone may sign up.
    Open,
    /// Only the admin adds accounts (`rtm user add`).
    Closed,
    /// Sign-up needs a join link made by the admin.
    Invite,
}

/// How hard SQLite works to keep a commit through a power cut (`--durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Durability {
    /// `synchronous=NORMAL` (WAL): a commit survives a crash of the process, and the
    /// file is never corrupted; a power cut may lose the last commits.
    #[default]
    Normal,
    /// `synchronous=FULL`: the WAL is fsynced at every commit (a batch of messages),
    /// so an acknowledged message survives a power cut too.
    Full,
}

impl RegistrationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationMode::Open => "open",
            RegistrationMode::Closed => "closed",
            RegistrationMode::Invite => "invite",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(Self::Open),
            "closed" => Some(Self::Closed),
            "invite" => Some(Self::Invite),
            _ => None,
        }
    }
}

#[derive(Args, Clone)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "RTM_LISTEN", default_value = "127.0.0.1:8080", global = true)]
    pub listen: SocketAddr,

    /// Directory for the embedded SQLite database (created if missing).
    #[arg(long, env = "RTM_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,

    /// Database URL: `sqlite:PATH`, `postgres://user:pass@host/db` or
    /// `mysql://user:pass@host/db` (MySQL or MariaDB).
    /// Default: SQLite at DATA_DIR/rtm.db.
    #[arg(long, env = "RTM_DATABASE", global = true)]
    pub database: Option<String>,

    /// Message bus between nodes: unset = in-process (one node); `redis://host:port/`
    /// lets several nodes share one database (PostgreSQL) behind a load balancer.
    #[arg(long, env = "RTM_BUS", global = true)]
    pub bus: Option<String>,

    /// Prefix of every Redis key and channel, so several deployments (or test runs) can
    /// share one Redis. Pub/sub channels ignore Redis database numbers.
    #[arg(long, env = "RTM_BUS_PREFIX", default_value = "rtm", global = true)]
    pub bus_prefix: String,

    /// The origin browsers use to reach this server (scheme://host[:port]); WebSocket
    /// handshakes and state-changing requests from any other origin are refused.
    /// Default: http://LISTEN. Use https://… behind a TLS proxy (cookies become Secure).
    #[arg(long, env = "RTM_PUBLIC_ORIGIN", value_parser = parse_origin, global = true)]
    pub public_origin: Option<String>,

    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `rtm=debug,info`.
    #[arg(long, env = "RTM_LOG", default_value = "info", global = true)]
    pub log: String,

    /// Registration mode at start-up (overrides what the admin last chose). Unset: keep
    /// the stored mode, `open` on a new database.
    #[arg(long, env = "RTM_REGISTRATION", value_enum, global = true)]
    pub registration: Option<RegistrationMode>,

    /// A session ends after this many seconds without use.
    #[arg(long, env = "RTM_SESSION_IDLE_SECS", default_value_t = 14 * 24 * 3600, global = true)]
    pub session_idle_secs: i64,

    /// A session ends this many seconds after sign-in, used or not.
    #[arg(long, env = "RTM_SESSION_MAX_SECS", default_value_t = 90 * 24 * 3600, global = true)]
    pub session_max_secs: i64,

    /// Longest message text, in characters.
    #[arg(long, env = "RTM_MAX_MESSAGE_CHARS", default_value_t = 4000, global = true)]
    pub max_message_chars: usize,

    /// Largest WebSocket frame or message a client may send, in bytes.
    #[arg(long, env = "RTM_MAX_FRAME_BYTES", default_value_t = 64 * 1024, global = true)]
    pub max_frame_bytes: usize,

    /// Messages one user may send per 10 seconds (over all their connections).
    #[arg(long = "rate-messages", env = "RTM_RATE_MESSAGES", default_value_t = 100, global = true)]
    pub rate_messages_per_10s: u32,

    /// Rooms created, invitations sent and DMs opened per user per minute (each one
    /// reaches other people's sockets, so they are limited like messages).
    #[arg(long = "rate-social", env = "RTM_RATE_SOCIAL", default_value_t = 60, global = true)]
    pub rate_social_per_min: u32,

    /// Frames that may wait for one connection before it counts as a slow consumer and
    /// is disconnected (it then resumes).
    #[arg(long, env = "RTM_OUTBOX_FRAMES", default_value_t = 1024, global = true)]
    pub outbox_frames: usize,

    /// Bytes that may wait for one connection before it counts as a slow consumer.
    #[arg(long, env = "RTM_OUTBOX_BYTES", default_value_t = 8 * 1024 * 1024, global = true)]
    pub outbox_bytes: usize,

    /// Trust the `X-Forwarded-For` header set by a reverse proxy in front of this server
    /// (its last address is the client's) for per-address rate limits. Only set this when
    /// every request comes through that proxy.
    #[arg(long, env = "RTM_TRUST_PROXY", global = true)]
    pub trust_proxy: bool,

    /// Retention of new rooms when their creator does not choose: keep the last N messages.
    #[arg(long, env = "RTM_DEFAULT_KEEP_MESSAGES", default_value_t = 1000, global = true)]
    pub default_keep_messages: i64,

    /// Where uploaded files are kept (content-addressed blobs). Default: DATA_DIR/files.
    /// Several nodes must all see the same directory (a shared volume).
    #[arg(long, env = "RTM_FILES_DIR", global = true)]
    pub files_dir: Option<PathBuf>,

    /// Largest uploaded file, in bytes (default 25 MiB).
    #[arg(long, env = "RTM_MAX_FILE_BYTES", default_value_t = 25 * 1024 * 1024, global = true)]
    pub max_file_bytes: u64,

    /// Bytes of uploads one user may keep (pending and attached), in bytes (default 1 GiB).
    #[arg(long, env = "RTM_USER_STORAGE_QUOTA", default_value_t = 1024 * 1024 * 1024, global = true)]
    pub user_storage_quota: u64,

    /// Accepted upload types: a comma list of MIME types and `type/*` patterns
    /// (e.g. `image/*,application/pdf`); empty: any type.
    #[arg(long, env = "RTM_ACCEPTED_FILE_TYPES", default_value = "", value_parser = parse_accepted_types, global = true)]
    pub accepted_file_types: crate::domain::files::AcceptedTypes,

    /// Sign-in and sign-up attempts allowed per client address per minute.
    #[arg(long, env = "RTM_AUTH_RATE_PER_MIN", default_value_t = 30, global = true)]
    pub auth_rate_per_min: u32,

    /// Password hashes computed at once (each takes ~25 ms of one core and 19 MiB).
    #[arg(long, env = "RTM_HASH_CONCURRENCY", default_value_t = 2, global = true)]
    pub hash_concurrency: usize,

    /// Seconds to wait for connections to finish on shutdown.
    #[arg(long, env = "RTM_SHUTDOWN_GRACE_SECS", default_value_t = 10, global = true)]
    pub shutdown_grace_secs: u64,

    /// How often (seconds) the server deletes messages older than their room's keep-days.
    #[arg(long, env = "RTM_PRUNE_INTERVAL_SECS", default_value_t = 60, global = true)]
    pub prune_interval_secs: u64,

    /// Unread events one DM holds for its recipient (0: no bound). A DM keeps what its
    /// recipient has not read beyond the retention policy; past this many, the oldest
    /// are deleted even unread (the recipient's resume says `gap`). Counted per DM, so
    /// one sender's flood only ever pushes out that sender's own messages.
    #[arg(long, env = "RTM_MAX_HELD_DMS", default_value_t = 10_000, global = true)]
    pub max_held_dms: i64,

    /// API tokens one account may hold (each is a way into the account: bounded).
    #[arg(long, env = "RTM_MAX_API_TOKENS", default_value_t = 25, global = true)]
    pub max_api_tokens: usize,

    /// Days the admin audit log keeps an entry (older ones are pruned periodically;
    /// at least 1: 0 counts as 1).
    #[arg(long, env = "RTM_AUDIT_KEEP_DAYS", default_value_t = 365, global = true)]
    pub audit_keep_days: i64,

    /// Database connections in the pool.
    #[arg(long, env = "RTM_DB_POOL", default_value_t = 8, global = true)]
    pub db_pool: u32,

    /// Tests only: serve an unauthenticated WebSocket echo at `/test-echo`, built from
    /// the production reader, framing and limits, for the Autobahn conformance run
    /// (tests/autobahn/). Hidden from --help and without an environment variable, so
    /// nothing turns it on by accident.
    #[arg(long, hide = true, global = true)]
    pub test_echo_route: bool,

    /// Seconds an HTTP client has to send a complete request head, counted from when
    /// the connection opens or the previous response went out (so it is also the
    /// keep-alive idle timeout); then the connection is closed.
    #[arg(long, env = "RTM_HTTP_IDLE_SECS", default_value_t = 30, global = true)]
    pub http_idle_secs: u64,

    /// Seconds an HTTP client has to send a whole request body once its head is in;
    /// a slower one is answered 408 and its connection closed. Uploads have no total
    /// limit: each piece must come within this time of the previous one (else 400).
    #[arg(long, env = "RTM_HTTP_BODY_SECS", default_value_t = 10, global = true)]
    pub http_body_secs: u64,

    /// Concurrent HTTP connections from one client address (TCP peer); more are closed
    /// at once. 0: no cap. Upgraded WebSockets do not count. Behind a proxy every
    /// connection comes from the proxy's address (X-Forwarded-For is not read yet when
    /// the cap applies): raise it or set 0 and limit per client at the proxy.
    #[arg(long, env = "RTM_MAX_CONNS_PER_ADDR", default_value_t = 256, global = true)]
    pub max_conns_per_addr: usize,

    /// SQLite only: `normal` (a commit survives a process crash, maybe not a power
    /// cut) or `full` (fsync at every commit batch: survives a power cut; see
    /// BENCHMARKS.md for the cost).
    #[arg(long, env = "RTM_DURABILITY", value_enum, default_value_t = Durability::Normal, global = true)]
    pub durability: Durability,

    /// Open WebSockets one account may hold on this node (tabs, devices, bots); the
    /// handshake past it is refused with `too_many_connections`. 0: no cap.
    #[arg(long, env = "RTM_MAX_SOCKETS_PER_USER", default_value_t = 50, global = true)]
    pub max_sockets_per_user: usize,

    /// Failed sign-ins to one account before each further failure makes it wait
    /// (1 s, doubling); a browser that signed in to the account before is exempt.
    #[arg(long, env = "RTM_SIGN_IN_FREE_FAILURES", default_value_t = 5, global = true)]
    pub sign_in_free_failures: u32,

    /// Longest wait one account's failed sign-ins can impose, in seconds (kept short:
    /// an attacker must not be able to lock a person out for long).
    #[arg(long, env = "RTM_SIGN_IN_MAX_DELAY_SECS", default_value_t = 300, global = true)]
    pub sign_in_max_delay_secs: u64,

    /// Address of a second listener serving `GET /metrics` (Prometheus text format),
    /// e.g. `127.0.0.1:9090`. Unset: no metrics. Never served on `--listen`. An
    /// address that cannot be bound is logged (ERROR) and the server runs without
    /// metrics: monitoring never keeps the chat down.
    #[arg(long, env = "RTM_METRICS_LISTEN", global = true)]
    pub metrics_listen: Option<SocketAddr>,

    /// Seconds between a shutdown signal and closing the listener, during which
    /// `/readyz` answers 503 and everything else still works, so a load balancer
    /// stops sending new connections before they would be refused.
    #[arg(long, env = "RTM_DRAIN_DELAY_SECS", default_value_t = 0, global = true)]
    pub drain_delay_secs: u64,

    /// Log line format: `text` for people, `json` (one object per line) for log shippers.
    #[arg(long, env = "RTM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (tracing-subscriber's json formatter).
    Json,
}

impl Config {
    /// The database URL in force: the flag, or SQLite in the data dir.
    pub fn database_url(&self) -> String {
        match &self.database {
            Some(url) => url.clone(),
            None => format!("sqlite:{}", self.data_dir.join("rtm.db").display()),
        }
    }

    /// The public origin in force, without a trailing slash.
    pub fn origin(&self) -> String {
        match &self.public_origin {
            Some(o) => o.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.listen),
        }
    }

    /// Whether browsers reach us over TLS (cookies get `Secure` and the `__Host-` prefix).
    pub fn secure_cookies(&self) -> bool {
        self.origin().starts_with("https://")
    }

    /// A config with defaults, for tests and embedding: data in `data_dir`.
    pub fn for_tests(data_dir: PathBuf) -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct P {
            #[command(flatten)]
            c: Config,
        }
        // Parsing no arguments cannot fail: every field has a default. Env vars are
        // ignored here on purpose so tests are not steered by the caller's shell.
        let mut c = match P::try_parse_from(["rtm"]) {
            Ok(p) => p.c,
            Err(e) => panic!("default config must parse: {e}"),
        };
        c.data_dir = data_dir;
        c.database = None;
        c.bus = None;
        c.public_origin = None;
        c.registration = None;
        c
    }
}

/// An origin exactly as browsers send it: http or https, a host, an optional port,
/// nothing after (a path, query or user name would never match any request's Origin).
fn parse_origin(s: &str) -> Result<String, String> {
    let want = "scheme://host[:port], e.g. https://chat.example.org";
    let u = url::Url::parse(s).map_err(|e| format!("not an origin ({e}): {want}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(format!("not an http(s) origin: {want}"));
    }
    if u.path() != "/" || u.query().is_some() || u.fragment().is_some() || !u.username().is_empty() {
        return Err(format!("an origin has no path, query or user: {want}"));
    }
    Ok(s.trim_end_matches('/').to_string())
}

fn parse_accepted_types(s: &str) -> Result<crate::domain::files::AcceptedTypes, String> {
    crate::domain::files::AcceptedTypes::parse(s).map_err(|e| e.message)
}

/// Hides the password part of a database URL.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("database", &redact_url(&self.database_url()))
            .field("bus", &self.bus.as_deref().map(redact_url))
            .field("public_origin", &self.origin())
            .field("registration", &self.registration)
            .field("max_message_chars", &self.max_message_chars)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("rate_messages_per_10s", &self.rate_messages_per_10s)
            .field("outbox_frames", &self.outbox_frames)
            .field("default_keep_messages", &self.default_keep_messages)
            .field("http_idle_secs", &self.http_idle_secs)
            .field("http_body_secs", &self.http_body_secs)
            .field("max_conns_per_addr", &self.max_conns_per_addr)
            .field("durability", &self.durability)
            .field("max_sockets_per_user", &self.max_sockets_per_user)
            .field("metrics_listen", &self.metrics_listen)
            .field("files_dir", &self.files_dir)
            .field("max_file_bytes", &self.max_file_bytes)
            .field("user_storage_quota", &self.user_storage_quota)
            .field("accepted_file_types", &self.accepted_file_types)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_database_password() {
        let mut c = Config::for_tests("/tmp/x".into());
        c.database = Some("postgres://rtm:hunter22@localhost/rtm".into());
        let s = format!("{c:?}");
        assert!(!s.contains("hunter22"), "{s}");
        assert!(s.contains("***"));
    }

    #[test]
    fn origin_defaults_to_listen() {
        let c = Config::for_tests("/tmp/x".into());
        assert_eq!(c.origin(), "http://127.0.0.1:8080");
        assert!(!c.secure_cookies());
    }

    #[test]
    fn public_origin_must_be_an_origin() {
        for ok in
            ["https://chat.example.org", "http://127.0.0.1:8080", "https://chat.example.org/", "http://[::1]:9000"]
        {
            assert_eq!(parse_origin(ok).as_deref(), Ok(ok.trim_end_matches('/')), "{ok}");
        }
        for bad in [
            "not a url",
            "ftp://x",
            "https://chat.example.org/path",
            "https://a@chat.example.org",
            "https://x?y=1",
            "chat.example.org",
            "",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad:?}");
        }
    }
}
