//! RT Messenger: a self-hosted real-time chat server and its web client.
//!
//! Layout (see ARCHITECTURE.md for the invariants):
//! - [`config`]: flags and `RTM_*` environment fallbacks.
//! - [`app`]: builds the parts from the config; [`http`] and [`ws`] are the edges.
//! - [`chat`]: every business rule; the edges call it and nothing below it.
//! - [`domain`]: pure types and rules (names, retention) with no I/O.
//! - [`auth`]: password hashing and secrets.
//! - [`store`]: persistence (SQLite, PostgreSQL, MySQL/MariaDB); [`bus`]: delivery between nodes and
//!   presence; [`hub`]: delivery to this node's connections.
//! - [`error`]: HTTP error mapping; [`shutdown`]: signals and draining; [`metrics`]: `/metrics`.
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
pub mod metrics;
pub mod shutdown;
pub mod store;
pub mod ws;

use std::{future::Future, time::Duration};

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
    if let Some(at) = config.metrics_listen
        && let Err(e) = metrics::serve(at, state.clone(), stop_rx.clone()).await
    {
        tracing::error!(addr = %at, error = %e, "cannot serve metrics");
    }
    let housekeeping =
        tokio::spawn(housekeeping(state.clone(), Duration::from_secs(config.prune_interval_secs.max(1)), stop_rx));
    let shutdown = shutdown::announce(shutdown, state.draining.clone(), Duration::from_secs(config.drain_delay_secs));
    let http = accept_loop(state.router(), listener, HttpLimits::from_config(config), shutdown).await;
    // One deadline for the whole shutdown. WebSocket clients hear `server_shutdown`
    // at once (they reconnect elsewhere while this node finishes), and the HTTP
    // requests in flight finish meanwhile, not before.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(config.shutdown_grace_secs);
    tokio::join!(shutdown::drain(&state.hub, deadline), http.finish(deadline));
    // What the closed connections tell the other nodes (people going offline) goes
    // out before this node leaves.
    state.chat.settle_presence(deadline).await;
    let _ = stop_tx.send(true);
    let _ = housekeeping.await;
    // Leave the cluster (no-op on one node): other nodes stop counting on us at once.
    state.chat.bus.close().await;
    tracing::info!("stopped");
}

/// The HTTP connections of a server that stopped accepting.
struct HttpDrain {
    stop: tokio::sync::watch::Sender<()>,
    done: tokio::sync::watch::Sender<()>,
}

impl HttpDrain {
    /// Asks every HTTP connection to finish its request in flight and close, and
    /// waits for them until `deadline`.
    async fn finish(self, deadline: tokio::time::Instant) {
        let _ = self.stop.send(());
        if tokio::time::timeout_at(deadline, self.done.closed()).await.is_err() {
            tracing::warn!("http requests still running after the grace period");
        }
    }
}

/// What one client may hold of the HTTP side (see `--http-idle-secs`,
/// `--http-body-secs`, `--max-conns-per-addr`).
#[derive(Debug, Clone, Copy)]
struct HttpLimits {
    /// To send a request head, from the connection's start or the previous response;
    /// also how long a response may wait for a client that reads nothing.
    idle: Duration,
    /// To send a whole request body (enforced by `http::extract::Body`).
    body: Duration,
    /// Concurrent HTTP connections per peer address; 0: no cap.
    per_addr: usize,
}

impl HttpLimits {
    fn from_config(config: &Config) -> Self {
        HttpLimits {
            idle: Duration::from_secs(config.http_idle_secs.max(1)),
            body: Duration::from_secs(config.http_body_secs.max(1)),
            per_addr: config.max_conns_per_addr,
        }
    }
}

/// Open HTTP connections per peer address. A slot is taken at accept and given back
/// when hyper is done with the connection, which for a WebSocket is the upgrade: an
/// upgraded socket is authenticated and no longer counts (see ARCHITECTURE.md).
#[derive(Clone, Default)]
struct PerAddr(std::sync::Arc<parking_lot::Mutex<std::collections::HashMap<std::net::IpAddr, AddrCount>>>);

#[derive(Default)]
struct AddrCount {
    open: usize,
    /// Connections refused since this address last reached the cap (logged once).
    refused: u64,
}

/// One connection's place in [`PerAddr`].
struct AddrSlot {
    map: PerAddr,
    ip: std::net::IpAddr,
}

impl PerAddr {
    /// A slot for a connection from `ip`, or `None` when `ip` already holds `cap`.
    fn take(&self, ip: std::net::IpAddr, cap: usize) -> Option<AddrSlot> {
        let mut map = self.0.lock();
        let count = map.entry(ip).or_default();
        if cap > 0 && count.open >= cap {
            if count.refused == 0 {
                tracing::warn!(%ip, cap, "connection cap of one address reached: refusing its new connections");
            }
            count.refused += 1;
            return None;
        }
        count.open += 1;
        Some(AddrSlot { map: self.clone(), ip })
    }
}

impl Drop for AddrSlot {
    fn drop(&mut self) {
        let mut map = self.map.0.lock();
        if let Some(count) = map.get_mut(&self.ip) {
            count.open = count.open.saturating_sub(1);
            if count.refused > 0 {
                tracing::info!(ip = %self.ip, refused = count.refused, "address back under its connection cap");
                count.refused = 0;
            }
            if count.open == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// An `accept` error that concerns one connection only (it was reset before we took
/// it): retry at once, nothing to back off from.
fn accept_error_is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock)
}

/// Accepts connections and serves HTTP/1.1 on each until `shutdown`; returns the
/// connections still open, to be finished by the caller. Our own loop, not
/// `axum::serve`: its HTTP/2 sniffing wraps each socket in a private type, and the
/// WebSocket session needs the bare `TcpStream` back after the upgrade (see `ws`).
///
/// Every phase of an HTTP connection is bounded, so a client that stalls cannot hold a
/// file descriptor: the head (hyper's header timer, which starts when the connection
/// opens and again when a response has gone out: the keep-alive idle time), the body
/// (`http::extract::Body`; a handler that does not read the body answers at once and
/// hyper then closes a connection whose body is unfinished). The socket itself is not
/// wrapped: the WebSocket session needs it bare, and must not inherit these timers.
/// The response: a write that makes no progress for the idle time fails
/// ([`http::deadline`]: a client that pipelines requests and reads nothing), a wrapper
/// the WebSocket upgrade takes off again.
async fn accept_loop(
    router: axum::Router,
    listener: TcpListener,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> HttpDrain {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower_layer::Layer;

    // Told to every connection at shutdown; `done` closes when the last one has ended.
    let (stop, _) = tokio::sync::watch::channel(());
    let (done, alive) = tokio::sync::watch::channel(());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.idle);
    let per_addr = PerAddr::default();
    // Out of file descriptors (or another lasting accept error): when it started and
    // how many accepts failed since. Logged when it starts and when it ends, not at
    // every retry.
    let mut failing: Option<(tokio::time::Instant, u64)> = None;
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) if accept_error_is_per_connection(&e) => {
                    tracing::debug!(error = %e, "a connection ended before it was accepted");
                    continue;
                }
                Err(e) => {
                    // Out of file descriptors, typically: the waiting connections stay
                    // in the backlog; retry every 50 ms instead of spinning, and keep
                    // serving the connections we have (their timeouts free descriptors).
                    match &mut failing {
                        Some((_, n)) => *n += 1,
                        None => {
                            tracing::warn!(error = %e, "accept failed: retrying every 50 ms, logged again when it recovers");
                            failing = Some((tokio::time::Instant::now(), 1));
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if let Some((since, failed)) = failing.take() {
            tracing::warn!(failed, after_ms = since.elapsed().as_millis() as u64, "accepting again");
        }
        // An IPv6 /64 is one address, as for the other per-address limits.
        let Some(slot) = per_addr.take(domain::rate_key(peer.ip()), limits.per_addr) else {
            // Closed at once: the client sees a reset or an end of stream.
            drop(tcp);
            continue;
        };
        // Chat frames are small and latency matters: without TCP_NODELAY, Nagle's
        // algorithm meets the peer's delayed ACK and an ack can wait 40 ms.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let service = (
            axum::Extension(axum::extract::ConnectInfo(peer)),
            axum::Extension(http::extract::BodyTimeout(limits.body)),
        )
            .layer(router.clone());
        let conn = http
            .serve_connection(
                TokioIo::new(http::deadline::WriteDeadline::new(tcp, limits.idle)),
                hyper_util::service::TowerToHyperService::new(service),
            )
            .with_upgrades();
        let mut stopping = stop.subscribe();
        let alive = alive.clone();
        tokio::spawn(async move {
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stopping.changed() => {
                    // Finish the request in flight, then close (an upgraded socket
                    // has left hyper already: the hub closes those).
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "http connection ended with an error");
            }
            drop((alive, slot));
        });
    }
    drop((listener, alive));
    HttpDrain { stop, done }
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
