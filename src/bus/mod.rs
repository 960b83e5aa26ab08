//! Publish/subscribe between nodes, and the presence registry. The chat layer
//! publishes every event ONCE, already encoded, as an [`Envelope`]; each node's bus
//! subscriber hands it to that node's [`Hub`](crate::hub::Hub). Presence (who has at
//! least one open connection) lives here too, because with several nodes it must be
//! shared. `local.rs` is the in-process bus of a single node; a Redis bus would
//! implement the same trait (not built yet: see ARCHITECTURE.md).

pub mod local;

use std::sync::Arc;

use async_trait::async_trait;

use crate::{domain::UserId, hub::Envelope};

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Delivers an envelope to every node (this one included).
    async fn publish(&self, env: Envelope) -> Result<(), BusError>;
    /// Delivers envelopes in order, as one hand-off where the bus can (a commit's
    /// events: each connection then gets them in one write).
    async fn publish_batch(&self, envs: Vec<Envelope>) -> Result<(), BusError> {
        for env in envs {
            self.publish(env).await?;
        }
        Ok(())
    }
    /// Counts a new connection of `user`; true when the user just came online.
    async fn connected(&self, user: UserId) -> Result<bool, BusError>;
    /// Counts a closed connection of `user`; true when the user just went offline.
    async fn disconnected(&self, user: UserId) -> Result<bool, BusError>;
    /// Which of `users` are online.
    async fn online(&self, users: &[UserId]) -> Result<Vec<UserId>, BusError>;
}

pub type DynBus = Arc<dyn Bus>;
