//! RT Messenger: a self-hosted real-time chat server and its web client.
//!
//! Layout (see ARCHITECTURE.md for the invariants):
//! - [`config`]: flags and `RTM_*` environment fallbacks.
//! - [`app`]: builds the parts from the config; [`http`] and [`ws`] are the edges.
//! - [`chat`]: every business rule; the edges call it and nothing below it.
//! - [`domain`]: pure types and rules (names, retention) with no I/O.
//! - [`auth`]: password hashing and secrets.
//! - [`store`]: persistence (SQLite, PostgreSQL); [`bus`]: delivery between nodes and
//!   presence; [`hub`]: delivery to this node's connections.
//! - [`error`]: HTTP error mapping; [`shutdown`]: signals and draining.
//!
//! [`run`] is the one entry point shared by `main` and the tests.

pub mod app;
pub mod auth;
pub mod bus;
pub mod chat;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod hub;
pub mod shutdown;
pub mod store;
pub mod ws;

use std::{future::Future, net::SocketAddr, time::Duration};

use tokio::net::TcpListener;

pub use app::{AppState, BuildError};
pub use config::Config;

/// Serves until `shutdown` resolves, then drains connections. `listener` is already
/// bound (tests bind 127.0.0.1:0).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BuildError> {
    let state = AppState::build(&config).await?;
    serve(state, &config, listener, shutdown).await;
    Ok(())
}

/// Serves an already built state (lets tests reach the state, e.g. the store).
pub async fn serve(
    state: AppState,
    config: &Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let addr = listener.local_addr().ok();
    tracing::info!(?addr, origin = %config.origin(), registration = state.chat.registration_mode().as_str(), "serving");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let housekeeping =
        tokio::spawn(housekeeping(state.clone(), Duration::from_secs(config.prune_interval_secs.max(1)), stop_rx));
    let app = state.router().into_make_service_with_connect_info::<SocketAddr>();
    // Chat frames are small and latency matters: without TCP_NODELAY, Nagle's
    // algorithm meets the peer's delayed ACK and an ack can wait 40 ms.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        tracing::error!(error = %e, "server error");
    }
    shutdown::drain(&state.hub, Duration::from_secs(config.shutdown_grace_secs)).await;
    let _ = stop_tx.send(true);
    let _ = housekeeping.await;
    tracing::info!("stopped");
}

async fn housekeeping(state: AppState, prune_every: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut last_prune = tokio::time::Instant::now() - prune_every;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = state.chat.housekeeping().await {
            tracing::warn!(error = %e, "housekeeping failed");
        }
        if last_prune.elapsed() >= prune_every {
            last_prune = tokio::time::Instant::now();
            if let Err(e) = state.chat.prune().await {
                tracing::warn!(error = %e, "pruning failed");
            }
        }
    }
}
