//! The in-process bus: publishing is a direct, synchronous hand-off to this node's hub
//! (so per-room order is the order of `publish` calls), and presence is a count of
//! open connections per user.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Bus, BusError, LocalPresence};
use crate::{
    domain::UserId,
    hub::{Envelope, Hub},
};

pub struct LocalBus {
    hub: Arc<Hub>,
    presence: LocalPresence,
}

impl LocalBus {
    pub fn new(hub: Arc<Hub>) -> Self {
        LocalBus { hub, presence: LocalPresence::default() }
    }
}

#[async_trait]
impl Bus for LocalBus {
    async fn publish(&self, env: Envelope) -> Result<(), BusError> {
        self.hub.dispatch(&env);
        Ok(())
    }

    async fn publish_batch(&self, envs: Vec<Envelope>) -> Result<(), BusError> {
        self.hub.dispatch_batch(&envs);
        Ok(())
    }

    async fn connected(&self, user: UserId) -> Result<bool, BusError> {
        Ok(self.presence.up(user))
    }

    async fn disconnected(&self, user: UserId) -> Result<bool, BusError> {
        Ok(self.presence.down(user))
    }

    async fn online(&self, users: &[UserId]) -> Result<Vec<UserId>, BusError> {
        Ok(self.presence.filter(users, |_| false))
    }
}
