//! Publish/subscribe between nodes, and the presence registry. The chat layer
//! publishes every event ONCE, already encoded, as an [`Envelope`]; each node's bus
//! subscriber hands it to that node's [`Hub`](crate::hub::Hub). Presence (who has at
//! least one open connection) lives here too, because with several nodes it must be
//! shared. `local.rs` is the in-process bus of a single node; `redis.rs` connects
//! several nodes through Redis pub/sub, with `order.rs` putting each room's events
//! back in seq order (and filling gaps from the store) on the receiving node.

pub mod local;
pub mod order;
pub mod redis;

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{
    domain::{RoomId, Seq, UserId},
    hub::Envelope,
};

#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    #[error("bus configuration: {0}")]
    Config(String),
}

/// What a node needs from the layer above the bus: what other nodes changed (so its
/// caches stay exact) and the store's copy of events it missed on the wire. `chat`
/// implements it; the bus holds it weakly (chat owns the bus).
#[async_trait]
pub trait NodeEvents: Send + Sync + 'static {
    /// Another node changed a room's settings or members.
    fn room_changed(&self, room: RoomId);
    /// Another node changed a user's profile.
    fn user_changed(&self, user: UserId);
    /// Another node changed a server setting.
    async fn settings_changed(&self);
    /// Invalidations may have been missed (the bus link dropped): forget every cache.
    fn reset_caches(&self);
    /// These users went offline (their node died) or came back online (this node was
    /// taken for dead, e.g. cut off from Redis, and is back): tell their rooms.
    async fn presence_changed(&self, users: Vec<UserId>, online: bool);
    /// Presence changes from other nodes may have been lost on the way (the bus link
    /// dropped, or a node could not publish for a while): the current `presence` frame
    /// of each of these rooms, encoded, for this node's connections.
    async fn presence_frames(&self, rooms: &[RoomId]) -> Vec<(RoomId, Bytes)>;
    /// The kept events of `room` with `after < seq <= upto`, oldest first, encoded as
    /// the live event frames (at most `limit`).
    async fn events_between(
        &self,
        room: RoomId,
        after: Seq,
        upto: Seq,
        limit: i64,
    ) -> Result<Vec<(Seq, Bytes)>, BusError>;
    /// The newest seq of each room.
    async fn last_seqs(&self, rooms: &[RoomId]) -> Result<Vec<(RoomId, Seq)>, BusError>;
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
    /// Whether other nodes share this bus (caches, budgets and presence are then
    /// cluster-wide concerns); false for the in-process bus of one node.
    fn shared(&self) -> bool {
        false
    }
    /// Gives the bus the layer it reports to (several nodes only).
    fn attach(&self, _events: Weak<dyn NodeEvents>) {}
    /// `local` for the in-process bus; `up` or `down` for a bus between nodes.
    fn health(&self) -> &'static str {
        "local"
    }
    /// Whether this node hears every other node's invalidations right now. When false
    /// (Redis unreachable), callers must not trust what they cached.
    fn caches_exact(&self) -> bool {
        true
    }
    /// Takes one unit of a budget shared by every node: at most `limit` per `window_ms`
    /// under `key`. `None` when the bus keeps no shared budgets (one node: the caller's
    /// own limiter is the whole truth).
    async fn take_shared(&self, _key: &str, _limit: u32, _window_ms: u64) -> Option<bool> {
        None
    }
    /// Counts one attempt under `key` in a back-off shared by every node (sign-in
    /// attempts per account, see `auth::backoff`): `Some(Ok(()))` to go ahead,
    /// `Some(Err(wait))` to wait first; `clear` (a success) starts the key over.
    /// `None` when the bus keeps no shared state (one node) or cannot answer: the
    /// caller's own table applies.
    async fn shared_backoff(
        &self,
        _key: &str,
        _rule: &crate::auth::backoff::Rule,
        _clear: bool,
    ) -> Option<Result<(), std::time::Duration>> {
        None
    }
    /// Claims `key` for one node of the cluster for `ttl_ms`: `Some(true)` to the first
    /// node that asks, and to it again when it asks again (a retry of work that failed
    /// half-way), `Some(false)` to the others. Used where every node notices the
    /// same thing (a CLI action in the audit log) and one of them should announce it.
    /// `None` when the bus keeps no shared state (one node) or cannot answer: the
    /// caller then acts, as a repeat is better than silence.
    async fn claim(&self, _key: &str, _ttl_ms: u64) -> Option<bool> {
        None
    }
    /// Stops background work (heartbeats) and says goodbye, where there is any.
    async fn close(&self) {}
}

pub type DynBus = Arc<dyn Bus>;

/// Open connections per user on this node: the whole of presence on one node, this
/// node's share of it with several.
#[derive(Default)]
pub struct LocalPresence(parking_lot::Mutex<std::collections::HashMap<UserId, usize>>);

impl LocalPresence {
    /// Counts a new connection; true when it is the user's first here.
    pub fn up(&self, user: UserId) -> bool {
        let mut m = self.0.lock();
        let n = m.entry(user).or_insert(0);
        *n += 1;
        *n == 1
    }

    /// Counts a closed connection; true when it was the user's last here.
    pub fn down(&self, user: UserId) -> bool {
        let mut m = self.0.lock();
        match m.get_mut(&user) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                m.remove(&user);
                true
            }
            None => false,
        }
    }

    pub fn contains(&self, user: UserId) -> bool {
        self.0.lock().contains_key(&user)
    }

    /// Which of `users` have a connection here.
    pub fn filter(&self, users: &[UserId], also: impl Fn(UserId) -> bool) -> Vec<UserId> {
        let m = self.0.lock();
        users.iter().copied().filter(|u| m.contains_key(u) || also(*u)).collect()
    }

    /// Every user with a connection here.
    pub fn users(&self) -> Vec<UserId> {
        self.0.lock().keys().copied().collect()
    }
}
