//! Graceful shutdown as a protocol: a signal (or the caller's future) stops accepting,
//! every WebSocket is told `closing: server_shutdown` and closed, and the server waits
//! until all have finished, at most the grace period.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::hub::Hub;

/// Resolves on SIGINT or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}

/// Resolves `delay` after `signal`: marks the node as draining at once (`/readyz`
/// answers 503) and keeps accepting meanwhile, so a load balancer that polls
/// `/readyz` stops sending new connections before the listener closes.
pub async fn announce(signal: impl Future<Output = ()>, draining: Arc<AtomicBool>, delay: Duration) {
    signal.await;
    draining.store(true, Ordering::SeqCst);
    if !delay.is_zero() {
        tracing::info!(
            delay_secs = delay.as_secs(),
            "draining: /readyz answers 503; still accepting until the delay ends"
        );
        tokio::time::sleep(delay).await;
    }
}

/// Closes every connection of the hub and waits (until `deadline`) for them to finish.
pub async fn drain(hub: &Hub, deadline: tokio::time::Instant) {
    hub.close_all("server_shutdown", "the server is restarting; reconnect shortly");
    while hub.connection_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = hub.connection_count();
    if left > 0 {
        tracing::warn!(left, "connections still open after the grace period");
    }
}
