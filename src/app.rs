//! Assembly: builds the store, bus, hub and chat layer from the config, and the
//! router with its shared state.

use std::{net::IpAddr, num::NonZeroU32, sync::Arc};

use axum::Router;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::{
    bus::{BusError, DynBus, local::LocalBus, redis::RedisBus},
    chat::{Chat, ChatError, Policy},
    config::Config,
    hub::Hub,
    store::{self, StoreError},
};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub chat: Arc<Chat>,
    pub hub: Arc<Hub>,
    /// `rtm_session`, or `__Host-rtm_session` when served over https.
    pub cookie_name: Arc<str>,
    pub secure_cookies: bool,
    /// `--test-echo-route`: mount the test-only echo (`ws::session::echo`).
    pub test_echo_route: bool,
    /// Sign-in and sign-up attempts per client address.
    pub auth_limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    /// Key rate limits on `X-Forwarded-For` (behind a trusted proxy).
    pub trust_proxy: bool,
    /// Open WebSockets per account on this node, against `--max-sockets-per-user`.
    pub sockets: Arc<crate::ws::SocketSlots>,
    /// Set when shutdown begins: `/readyz` answers 503 from then on.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("start-up: {0}")]
    Chat(#[from] ChatError),
    #[error("bus: {0}")]
    Bus(#[from] BusError),
}

impl AppState {
    /// Opens the database named by the config and wires the bus: in-process for one
    /// node, Redis (`--bus redis://…`) for several nodes sharing the database.
    pub async fn build(config: &Config) -> Result<Self, BuildError> {
        Self::build_with(config, true).await
    }

    /// For a one-shot CLI command: the same wiring without background housekeeping
    /// (`Policy::housekeeping`).
    pub async fn build_for_cli(config: &Config) -> Result<Self, BuildError> {
        Self::build_with(config, false).await
    }

    async fn build_with(config: &Config, housekeeping: bool) -> Result<Self, BuildError> {
        let store = store::connect_with(&config.database_url(), config.db_pool, config.durability).await?;
        store.set_max_held_dms(config.max_held_dms);
        let hub = Arc::new(Hub::with_outbox_bytes(config.outbox_bytes));
        let bus: DynBus = match config.bus.as_deref() {
            None => Arc::new(LocalBus::new(hub.clone())),
            Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
                if config.database_url().starts_with("sqlite:") {
                    tracing::warn!("a Redis bus with SQLite: only nodes on this machine can share that file");
                }
                Arc::new(RedisBus::connect(url, &config.bus_prefix, hub.clone()).await?)
            }
            Some(_) => return Err(BusError::Config("--bus takes a redis:// URL".into()).into()),
        };
        let policy = Policy { housekeeping, ..Policy::from_config(config) };
        let chat = Chat::new(store, bus, policy, config.hash_concurrency, config.registration).await?;
        let per_min = NonZeroU32::new(config.auth_rate_per_min).unwrap_or(NonZeroU32::MIN);
        Ok(AppState {
            chat,
            hub,
            cookie_name: if config.secure_cookies() { "__Host-rtm_session".into() } else { "rtm_session".into() },
            secure_cookies: config.secure_cookies(),
            test_echo_route: config.test_echo_route,
            auth_limiter: Arc::new(RateLimiter::keyed(Quota::per_minute(per_min))),
            trust_proxy: config.trust_proxy,
            sockets: Arc::new(crate::ws::SocketSlots::new(config.max_sockets_per_user)),
            draining: Default::default(),
        })
    }

    pub fn router(&self) -> Router {
        crate::http::router(self.clone())
    }
}
