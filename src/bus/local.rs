//! The in-process bus: publishing is a direct, synchronous hand-off to this node's hub
//! (so per-room order is the order of `publish` calls), and presence is a count of
//! open connections per user.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{Bus, BusError};
use crate::{
    domain::UserId,
    hub::{Envelope, Hub},
};

pub struct LocalBus {
    hub: Arc<Hub>,
    presence: Mutex<HashMap<UserId, usize>>,
}

impl LocalBus {
    pub fn new(hub: Arc<Hub>) -> Self {
        LocalBus { hub, presence: Mutex::new(HashMap::new()) }
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
        let mut p = self.presence.lock();
        let n = p.entry(user).or_insert(0);
        *n += 1;
        Ok(*n == 1)
    }

    async fn disconnected(&self, user: UserId) -> Result<bool, BusError> {
        let mut p = self.presence.lock();
        match p.get_mut(&user) {
            Some(n) if *n > 1 => {
                *n -= 1;
                Ok(false)
            }
            Some(_) => {
                p.remove(&user);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn online(&self, users: &[UserId]) -> Result<Vec<UserId>, BusError> {
        let p = self.presence.lock();
        Ok(users.iter().copied().filter(|u| p.contains_key(u)).collect())
    }
}
