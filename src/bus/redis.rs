//! The bus of several nodes: Redis pub/sub carries envelopes between nodes, Redis keys
//! hold cluster-wide presence and shared rate budgets. Redis only notifies (at most
//! once); the database stays the truth, and `order.rs` repairs from it whatever a
//! node missed.
//!
//! - Channels: `P:r:ROOM` per room, `P:u:USER` per user, `P:n` for every node (cache
//!   invalidations). A node subscribes to a room's or user's channel only while it
//!   has a local connection for it (the hub's [`TopicWatcher`]), so it receives no
//!   traffic of rooms it does not serve.
//! - Publishing: one task per node pipelines a commit's envelopes, one PUBLISH per
//!   channel and commit. Local subscribers are served directly (no Redis round trip),
//!   so local delivery goes on while Redis is down.
//! - Presence: each node keeps `P:on:NODE` (a set of its online users) and beats in
//!   the `P:nodes` sorted set every [`BEAT`]. A node silent for [`DEAD_AFTER`] is
//!   reaped by one surviving node (a `SET NX` claim), which announces its users
//!   offline.
//! - Repair: after any reconnect, and every [`SWEEP`], each node compares the rooms
//!   it serves with the store's newest seqs and fills what it missed. Presence changes
//!   are not stored, so a lost one is repaired differently: a node that missed some
//!   (its link dropped) or whose own may have been missed (it dropped or failed
//!   publications, or Redis lost its presence set) has every node send its
//!   connections a fresh `presence` snapshot of each room, [`REFRESH_AFTER`] later.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, OnceLock, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use redis::{
    AsyncCommands, PushInfo, PushKind, Value,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use tokio::sync::mpsc;

use super::{Bus, BusError, LocalPresence, NodeEvents, order::Order};
use crate::{
    domain::{RoomId, UserId},
    hub::{Control, Envelope, Hub, Topic, TopicWatcher},
};

/// How often a node says it is alive.
pub const BEAT: Duration = Duration::from_secs(2);
/// How often a node whose subscription link is down tries to get it back.
const POKE: Duration = Duration::from_millis(250);
/// A node not heard of for this long is dead: its users are shown offline.
pub const DEAD_AFTER: Duration = Duration::from_secs(6);
/// How often a node checks the rooms it serves against the store (lost publications
/// that no later event revealed).
pub const SWEEP: Duration = Duration::from_secs(5);
/// How long after a presence loss was noticed the snapshots are sent: one beat and a
/// margin, so that after a Redis restart every live node has written its presence
/// set again (else a snapshot would show its users offline).
const REFRESH_AFTER: Duration = Duration::from_millis(2500);
/// How long a stopping node waits for its queued publications to reach Redis.
const CLOSE_FLUSH: Duration = Duration::from_secs(2);
/// Publications waiting for the publisher task; past this they are dropped (and
/// repaired from the store by the receivers).
const PUBLISH_QUEUE: usize = 8192;
/// Messages waiting for this node's receiver; past this they are dropped (and
/// repaired from the store).
const RECEIVE_QUEUE: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubCmd {
    Subscribe(Topic),
    Unsubscribe(Topic),
}

struct Inner {
    /// This process's random id: tells our own publications from other nodes'.
    node: u64,
    prefix: String,
    order: Arc<Order>,
    /// Commands and publishing (a separate connection from the subscriptions).
    cmd: ConnectionManager,
    sub_tx: mpsc::UnboundedSender<SubCmd>,
    pub_tx: mpsc::Sender<Vec<(String, Vec<u8>)>>,
    /// Open connections per local user.
    local: LocalPresence,
    events: OnceLock<Weak<dyn NodeEvents>>,
    /// The subscriber link is up and subscribed: invalidations are being heard.
    link_up: AtomicBool,
    /// Redis may have lost this node's presence set (reconnect): write it again.
    resync: AtomicBool,
    /// Live nodes other than this one, cached briefly for presence queries.
    peers: Mutex<(Option<Instant>, Vec<u64>)>,
    /// This node has beaten at least once (a later fresh entry means it was removed).
    beaten: AtomicBool,
    /// Publications dropped because the queue was full (logged now and then).
    dropped: AtomicU64,
    /// Publications of this node were dropped or refused by Redis: presence changes
    /// among them never reached the other nodes. The next beat tells them.
    presence_lost: Arc<AtomicBool>,
    /// A presence refresh of the rooms this node serves is due (later losses join it).
    refresh_due: AtomicBool,
    /// Publications handed to the publisher task, and those it has sent (or failed to
    /// send) since: a stopping node waits until the second catches up with the first.
    queued: AtomicU64,
    sent: Arc<AtomicU64>,
    stopped: AtomicBool,
}

/// The Redis bus; cheap to clone.
#[derive(Clone)]
pub struct RedisBus(Arc<Inner>);

fn redis_err(e: redis::RedisError) -> BusError {
    BusError::Unavailable(e.to_string())
}

impl RedisBus {
    /// Connects (two connections: commands and subscriptions), subscribes to the
    /// node channel, and starts the publisher, receiver, subscriber and heartbeat
    /// tasks. Fails when Redis cannot be reached at start.
    pub async fn connect(url: &str, prefix: &str, hub: Arc<Hub>) -> Result<Self, BusError> {
        let mut info: redis::ConnectionInfo =
            redis::IntoConnectionInfo::into_connection_info(url).map_err(|e| BusError::Config(e.to_string()))?;
        // Push messages (pub/sub on the same multiplexed connection) need RESP3.
        info =
            info.clone().set_redis_settings(info.redis_settings().clone().set_protocol(redis::ProtocolVersion::RESP3));
        let client = redis::Client::open(info).map_err(|e| BusError::Config(e.to_string()))?;
        let base = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let cmd = client.get_connection_manager_with_config(base.clone()).await.map_err(redis_err)?;
        let (push_tx, push_rx) = mpsc::channel::<PushInfo>(RECEIVE_QUEUE);
        let overflow = Arc::new(AtomicBool::new(false));
        let of = overflow.clone();
        let sub_cfg = base.set_automatic_resubscription().set_push_sender(move |p: PushInfo| {
            // Never block the connection's reader: a full queue drops, and the
            // receiver repairs from the store.
            if push_tx.try_send(p).is_err() {
                of.store(true, Ordering::Relaxed);
            }
            Ok::<(), redis::aio::SendError>(())
        });
        let sub = client.get_connection_manager_with_config(sub_cfg).await.map_err(redis_err)?;
        let mut rnd = [0u8; 8];
        getrandom::fill(&mut rnd).map_err(|e| BusError::Config(e.to_string()))?;
        let node = u64::from_le_bytes(rnd) & (u64::MAX >> 12);
        let (sub_tx, sub_rx) = mpsc::unbounded_channel();
        let (pub_tx, pub_rx) = mpsc::channel(PUBLISH_QUEUE);
        let order = Order::new(hub.clone());
        let inner = Arc::new(Inner {
            node,
            prefix: prefix.to_string(),

            order,
            cmd,
            sub_tx,
            pub_tx,
            local: LocalPresence::default(),
            events: OnceLock::new(),
            link_up: AtomicBool::new(false),
            resync: AtomicBool::new(true),
            peers: Mutex::new((None, Vec::new())),
            dropped: AtomicU64::new(0),
            presence_lost: Arc::new(AtomicBool::new(false)),
            refresh_due: AtomicBool::new(false),
            queued: AtomicU64::new(0),
            sent: Arc::new(AtomicU64::new(0)),
            beaten: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        });
        let mut sub_for_nodes = sub.clone();
        sub_for_nodes.subscribe(inner.nodes_channel()).await.map_err(redis_err)?;
        inner.link_up.store(true, Ordering::SeqCst);
        hub.set_watcher(Arc::new(Watcher(Arc::downgrade(&inner))));
        tokio::spawn(publisher(inner.cmd.clone(), pub_rx, inner.presence_lost.clone(), inner.sent.clone()));
        tokio::spawn(receiver(Arc::downgrade(&inner), push_rx, overflow));
        tokio::spawn(subscriber(Arc::downgrade(&inner), sub.clone(), sub_rx));
        tokio::spawn(heartbeat(Arc::downgrade(&inner), sub));
        tracing::info!(node = format!("{node:x}"), "joined the cluster on Redis");
        Ok(RedisBus(inner))
    }
}

impl Inner {
    fn channel(&self, topic: Topic) -> String {
        match topic {
            Topic::Room(r) => format!("{}:r:{r}", self.prefix),
            Topic::User(u) => format!("{}:u:{u}", self.prefix),
            Topic::Nodes => self.nodes_channel(),
        }
    }

    fn nodes_channel(&self) -> String {
        format!("{}:n", self.prefix)
    }

    fn topic_of(&self, channel: &[u8]) -> Option<Topic> {
        let rest = channel.strip_prefix(self.prefix.as_bytes())?.strip_prefix(b":")?;
        let text = std::str::from_utf8(rest).ok()?;
        if text == "n" {
            return Some(Topic::Nodes);
        }
        let (kind, id) = text.split_once(':')?;
        let id: i64 = id.parse().ok()?;
        match kind {
            "r" => Some(Topic::Room(id)),
            "u" => Some(Topic::User(id)),
            _ => None,
        }
    }

    fn presence_key(&self, node: u64) -> String {
        format!("{}:on:{node:x}", self.prefix)
    }

    fn nodes_key(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// Whether a survivor's reap claim on this node exists (it announced our users
    /// offline); the claim lives 30 s, longer than any reap takes.
    async fn was_reaped(&self, cmd: &mut ConnectionManager) -> bool {
        let key = format!("{}:reap:{:x}", self.prefix, self.node);
        cmd.exists(&key).await.unwrap_or(false)
    }

    fn events(&self) -> Option<Arc<dyn NodeEvents>> {
        self.events.get().and_then(Weak::upgrade)
    }

    /// Serves local subscribers at once, and queues the publications for other nodes
    /// (one message per channel, with the envelopes in order).
    fn publish_all(&self, envs: Vec<Envelope>) {
        let mut by_channel: Vec<(Topic, Vec<&Envelope>)> = Vec::new();
        for env in &envs {
            match by_channel.iter_mut().find(|(t, _)| *t == env.topic) {
                Some((_, v)) => v.push(env),
                None => by_channel.push((env.topic, vec![env])),
            }
        }
        let msgs: Vec<(String, Vec<u8>)> =
            by_channel.iter().map(|(t, v)| (self.channel(*t), wire::encode(self.node, v))).collect();
        // Topic::Nodes carries changes this node already applied to itself.
        let local: Vec<Envelope> = envs.into_iter().filter(|e| e.topic != Topic::Nodes).collect();
        if !local.is_empty() {
            self.order.admit(local);
        }
        if msgs.is_empty() {
            return;
        }
        match self.pub_tx.try_send(msgs) {
            Ok(()) => {
                self.queued.fetch_add(1, Ordering::SeqCst);
                return;
            }
            // The publisher task is gone: the process is ending.
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::debug!("publication after the publisher stopped");
                return;
            }
            Err(mpsc::error::TrySendError::Full(_)) => {}
        }
        // Other nodes repair kept events from the store, presence when told to.
        self.presence_lost.store(true, Ordering::SeqCst);
        // Say so now and then, not per drop.
        let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!(dropped = n, "publish queue full: publications dropped, other nodes repair from the store");
        }
    }

    /// Nodes alive now, other than this one (cached for a second).
    async fn peers(&self) -> Vec<u64> {
        {
            let p = self.peers.lock();
            if let Some(at) = p.0
                && at.elapsed() < Duration::from_secs(1)
            {
                return p.1.clone();
            }
        }
        let since = crate::chat::now_ms() - DEAD_AFTER.as_millis() as i64;
        let mut cmd = self.cmd.clone();
        let nodes: Vec<String> = match cmd.zrangebyscore(self.nodes_key(), since, "+inf").await {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "cannot list live nodes");
                return Vec::new();
            }
        };
        let peers: Vec<u64> =
            nodes.iter().filter_map(|n| u64::from_str_radix(n, 16).ok()).filter(|n| *n != self.node).collect();
        *self.peers.lock() = (Some(Instant::now()), peers.clone());
        peers
    }

    /// Which of `users` have a connection on another live node.
    async fn online_elsewhere(&self, users: &[UserId]) -> Result<HashSet<UserId>, BusError> {
        let peers = self.peers().await;
        if peers.is_empty() || users.is_empty() {
            return Ok(HashSet::new());
        }
        let mut pipe = redis::pipe();
        for p in &peers {
            pipe.cmd("SMISMEMBER").arg(self.presence_key(*p)).arg(users);
        }
        let mut cmd = self.cmd.clone();
        let answers: Vec<Vec<i64>> = pipe.query_async(&mut cmd).await.map_err(redis_err)?;
        let mut found = HashSet::new();
        for a in answers {
            for (u, on) in users.iter().zip(a) {
                if on == 1 {
                    found.insert(*u);
                }
            }
        }
        Ok(found)
    }

    /// Records in Redis that `user`'s first connection here opened (`here`) or its last
    /// one closed; true when no other live node has the user (they just came online,
    /// or went offline).
    async fn record_here(&self, user: UserId, here: bool) -> bool {
        let mut cmd = self.cmd.clone();
        let key = self.presence_key(self.node);
        let done: Result<(), _> = if here { cmd.sadd(key, user).await } else { cmd.srem(key, user).await };
        if let Err(e) = done {
            tracing::debug!(error = %e, "cannot record presence in Redis");
            self.resync.store(true, Ordering::SeqCst);
        }
        self.online_elsewhere(&[user]).await.map(|s| s.is_empty()).unwrap_or(true)
    }

    /// Hands envelopes from another node to this node's connections and caches.
    async fn deliver_remote(self: &Arc<Self>, envs: Vec<Envelope>) {
        let mut to_hub = Vec::with_capacity(envs.len());
        for env in envs {
            if env.topic != Topic::Nodes {
                to_hub.push(env);
                continue;
            }
            let Some(events) = self.events() else { continue };
            match env.control {
                Some(Control::RoomChanged(r)) => events.room_changed(r),
                Some(Control::UserChanged(u)) => events.user_changed(u),
                Some(Control::SettingsChanged) => events.settings_changed().await,
                Some(Control::PresenceStale) => self.refresh_presence(),
                _ => {}
            }
        }
        if !to_hub.is_empty() {
            self.order.admit(to_hub);
        }
    }

    /// After the link came back: nothing heard meanwhile can be trusted, and what
    /// was published meanwhile is in the store.
    fn recovered(self: &Arc<Self>) {
        if let Some(events) = self.events() {
            events.reset_caches();
        }
        self.resync.store(true, Ordering::SeqCst);
        let me = self.clone();
        tokio::spawn(async move {
            // Let the automatic resubscription finish first: what is published
            // before a channel is back is found in the store by this catch-up.
            tokio::time::sleep(Duration::from_millis(300)).await;
            me.order.catch_up(me.order.watched());
        });
        // Presence changes heard meanwhile are lost for good: send snapshots instead.
        self.refresh_presence();
    }

    /// Sends this node's connections a fresh `presence` snapshot of every room they
    /// hear, [`REFRESH_AFTER`] from now; a loss noticed before then joins this refresh.
    /// Which changes were lost is not known, only that some may have been.
    fn refresh_presence(self: &Arc<Self>) {
        if self.refresh_due.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(REFRESH_AFTER).await;
            me.refresh_due.store(false, Ordering::SeqCst);
            let Some(events) = me.events() else { return };
            let rooms = me.order.watched();
            let envs: Vec<Envelope> = events
                .presence_frames(&rooms)
                .await
                .into_iter()
                .map(|(room, frame)| Envelope::frame(Topic::Room(room), frame))
                .collect();
            tracing::info!(rooms = envs.len(), "presence changes may have been lost; sent fresh snapshots");
            if !envs.is_empty() {
                me.order.admit(envs);
            }
        });
    }

    /// Tells the other nodes that presence changes of this node may not have reached
    /// them. Through the publish queue: if that is still full, the loss is noted again
    /// and the next beat retries.
    fn announce_presence_stale(&self) {
        self.publish_all(vec![Envelope::control(Topic::Nodes, Control::PresenceStale, None)]);
    }
}

/// The hub's watcher: subscribe on Redis to what this node serves.
struct Watcher(Weak<Inner>);

impl TopicWatcher for Watcher {
    fn first(&self, topic: Topic, seq: Option<i64>) {
        let Some(inner) = self.0.upgrade() else { return };
        if let (Topic::Room(r), Some(seq)) = (topic, seq) {
            inner.order.watch(r, seq);
        }
        let _ = inner.sub_tx.send(SubCmd::Subscribe(topic));
    }

    fn last(&self, topic: Topic) {
        let Some(inner) = self.0.upgrade() else { return };
        if let Topic::Room(r) = topic {
            inner.order.unwatch(r);
        }
        let _ = inner.sub_tx.send(SubCmd::Unsubscribe(topic));
    }
}

/// Sends queued publications, as many as are waiting in one pipeline, and counts
/// them in `sent` once Redis answered. A pipeline Redis refused is lost:
/// `presence_lost` says so.
async fn publisher(
    mut cmd: ConnectionManager,
    mut rx: mpsc::Receiver<Vec<(String, Vec<u8>)>>,
    presence_lost: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) {
    let mut failing = false;
    let mut batch = Vec::new();
    loop {
        let n = rx.recv_many(&mut batch, 256).await;
        if n == 0 {
            return;
        }
        let mut pipe = redis::pipe();
        for msgs in batch.drain(..) {
            for (channel, payload) in msgs {
                crate::metrics::BUS_PUBLISHED.inc();
                pipe.publish(channel, payload).ignore();
            }
        }
        let answer = pipe.query_async::<()>(&mut cmd).await;
        sent.fetch_add(n as u64, Ordering::SeqCst);
        if answer.is_err() {
            presence_lost.store(true, Ordering::SeqCst);
        }
        match answer {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("publishing to Redis works again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cannot publish to Redis; other nodes will catch up from the store");
            }
            Err(_) => {}
        }
    }
}

/// Reads what Redis pushes: other nodes' envelopes, and the link going down and up.
async fn receiver(inner: Weak<Inner>, mut rx: mpsc::Receiver<PushInfo>, overflow: Arc<AtomicBool>) {
    while let Some(p) = rx.recv().await {
        crate::metrics::BUS_RECEIVE_BACKLOG.set(rx.len());
        let Some(inner) = inner.upgrade() else { return };
        if overflow.swap(false, Ordering::Relaxed) {
            tracing::warn!("this node fell behind on Redis; catching up from the store");
            inner.recovered();
        }
        match p.kind {
            PushKind::Message => {
                crate::metrics::BUS_RECEIVED.inc();
                let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
                    (p.data.first(), p.data.get(1))
                else {
                    continue;
                };
                let Some(topic) = inner.topic_of(channel) else { continue };
                match wire::decode(payload, topic) {
                    Ok((node, _)) if node == inner.node => {}
                    Ok((_, envs)) => inner.deliver_remote(envs).await,
                    Err(e) => tracing::warn!(error = %e, "undecodable message on the bus"),
                }
            }
            PushKind::Disconnection if inner.link_up.swap(false, Ordering::SeqCst) => {
                tracing::warn!("lost the Redis subscription link; caches are bypassed until it is back");
                if let Some(events) = inner.events() {
                    events.reset_caches();
                }
            }
            PushKind::Subscribe if !inner.link_up.swap(true, Ordering::SeqCst) => {
                tracing::info!("Redis subscription link is back; catching up from the store");
                inner.recovered();
            }
            _ => {}
        }
    }
}

/// Applies (un)subscriptions the hub asked for, several at a time; a room that was
/// just subscribed is caught up from the store (what was published before the
/// subscription took effect).
async fn subscriber(inner: Weak<Inner>, mut sub: ConnectionManager, mut rx: mpsc::UnboundedReceiver<SubCmd>) {
    let mut cmds = Vec::new();
    // Subscriptions that failed (Redis down) are retried; the last wish per topic wins.
    let mut pending: HashMap<Topic, bool> = HashMap::new();
    loop {
        let got = tokio::select! {
            n = rx.recv_many(&mut cmds, 1024) => n,
            _ = tokio::time::sleep(Duration::from_millis(500)), if !pending.is_empty() => 0,
        };
        if got == 0 && pending.is_empty() {
            return;
        }
        let Some(inner) = inner.upgrade() else { return };
        for c in cmds.drain(..) {
            match c {
                SubCmd::Subscribe(t) => pending.insert(t, true),
                SubCmd::Unsubscribe(t) => pending.insert(t, false),
            };
        }
        let (on, off): (Vec<Topic>, Vec<Topic>) = {
            let (a, b): (Vec<_>, Vec<_>) = pending.iter().partition(|(_, s)| **s);
            (a.into_iter().map(|(t, _)| *t).collect(), b.into_iter().map(|(t, _)| *t).collect())
        };
        if !off.is_empty() {
            let chans: Vec<String> = off.iter().map(|t| inner.channel(*t)).collect();
            if sub.unsubscribe(&chans).await.is_ok() {
                for t in &off {
                    pending.remove(t);
                }
            }
        }
        if !on.is_empty() {
            let chans: Vec<String> = on.iter().map(|t| inner.channel(*t)).collect();
            match sub.subscribe(&chans).await {
                Ok(()) => {
                    for t in &on {
                        pending.remove(t);
                    }
                    let rooms: Vec<RoomId> =
                        on.iter().filter_map(|t| if let Topic::Room(r) = t { Some(*r) } else { None }).collect();
                    inner.order.catch_up(rooms);
                }
                Err(e) => tracing::debug!(error = %e, "subscribing failed; will retry"),
            }
        }
    }
}

/// Beats, keeps this node's presence set in Redis, reaps dead nodes, sweeps rooms
/// against the store, and pokes the subscription link so it reconnects.
async fn heartbeat(inner: Weak<Inner>, mut sub: ConnectionManager) {
    // Ticks often, so a lost link is retried within a fraction of a second; beats,
    // reaps and sweeps at their own pace.
    let mut tick = tokio::time::interval(POKE);
    let mut last_beat: Option<Instant> = None;
    let mut last_sweep = Instant::now();
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.stopped.load(Ordering::SeqCst) {
            return;
        }
        // A PING on a broken subscription connection makes it reconnect (and then
        // resubscribe everything).
        if !inner.link_up.load(Ordering::SeqCst) {
            let _: Result<String, _> = redis::cmd("PING").query_async(&mut sub).await;
        }
        if last_beat.is_some_and(|t| t.elapsed() < BEAT) {
            continue;
        }
        last_beat = Some(Instant::now());
        if let Err(e) = beat(&inner).await {
            tracing::debug!(error = %e, "heartbeat failed");
            inner.resync.store(true, Ordering::SeqCst);
            continue;
        }
        if let Err(e) = reap(&inner).await {
            tracing::debug!(error = %e, "reaping dead nodes failed");
        }
        if last_sweep.elapsed() >= SWEEP {
            last_sweep = Instant::now();
            inner.order.catch_up(inner.order.watched());
        }
    }
}

async fn beat(inner: &Arc<Inner>) -> Result<(), BusError> {
    let mut cmd = inner.cmd.clone();
    let now = crate::chat::now_ms();
    let fresh: i64 = cmd.zadd(inner.nodes_key(), format!("{:x}", inner.node), now).await.map_err(redis_err)?;
    // Added anew: Redis restarted, or another node reaped us while we were stalled or
    // cut off (then it announced our users offline: say they are back).
    let before = inner.beaten.swap(true, Ordering::SeqCst);
    let reaped = fresh == 1 && before;
    // Publications were lost since the last beat: presence changes among them too.
    let mut stale = inner.presence_lost.swap(false, Ordering::SeqCst);
    if fresh == 1 || inner.resync.swap(false, Ordering::SeqCst) {
        let users: Vec<UserId> = inner.local.users();
        let key = inner.presence_key(inner.node);
        let mut pipe = redis::pipe();
        pipe.del(&key).ignore();
        for chunk in users.chunks(1000) {
            pipe.sadd(&key, chunk).ignore();
        }
        if let Err(e) = pipe.query_async::<()>(&mut cmd).await {
            inner.resync.store(true, Ordering::SeqCst);
            return Err(redis_err(e));
        }
        // Only if the others may have been told otherwise: our entry was reaped (not
        // lost with a Redis restart, after which nobody announced anything).
        if reaped
            && inner.was_reaped(&mut cmd).await
            && !users.is_empty()
            && let Some(events) = inner.events()
        {
            tracing::info!(users = users.len(), "this node was taken for dead; announcing its users online again");
            events.presence_changed(users, true).await;
        }
        // Not at start: then nobody can have seen our users wrongly. After that, a
        // set written again was missing or out of date in Redis meanwhile.
        stale |= before;
    }
    if stale {
        inner.announce_presence_stale();
    }
    Ok(())
}

/// One live node claims each dead node and announces its users offline (those not
/// online on another node).
async fn reap(inner: &Arc<Inner>) -> Result<(), BusError> {
    let mut cmd = inner.cmd.clone();
    let before = crate::chat::now_ms() - DEAD_AFTER.as_millis() as i64;
    let dead: Vec<String> = cmd.zrangebyscore(inner.nodes_key(), "-inf", before).await.map_err(redis_err)?;
    for d in dead {
        let Ok(node) = u64::from_str_radix(&d, 16) else { continue };
        if node == inner.node {
            continue;
        }
        let claim: Option<String> = redis::cmd("SET")
            .arg(format!("{}:reap:{d}", inner.prefix))
            .arg(format!("{:x}", inner.node))
            .arg("NX")
            .arg("PX")
            .arg(30_000)
            .query_async(&mut cmd)
            .await
            .map_err(redis_err)?;
        if claim.is_none() {
            continue;
        }
        let key = inner.presence_key(node);
        let users: Vec<UserId> = cmd.smembers(&key).await.map_err(redis_err)?;
        let _: () =
            redis::pipe().del(&key).zrem(inner.nodes_key(), &d).query_async(&mut cmd).await.map_err(redis_err)?;
        inner.peers.lock().0 = None;
        let still = inner.online_elsewhere(&users).await?;
        let gone: Vec<UserId> = users.into_iter().filter(|u| !still.contains(u) && !inner.local.contains(*u)).collect();
        tracing::info!(node = d, users = gone.len(), "a node stopped beating; its users are offline");
        if !gone.is_empty()
            && let Some(events) = inner.events()
        {
            events.presence_changed(gone, false).await;
        }
    }
    Ok(())
}

#[async_trait]
impl Bus for RedisBus {
    async fn publish(&self, env: Envelope) -> Result<(), BusError> {
        self.0.publish_all(vec![env]);
        Ok(())
    }

    async fn publish_batch(&self, envs: Vec<Envelope>) -> Result<(), BusError> {
        self.0.publish_all(envs);
        Ok(())
    }

    async fn connected(&self, user: UserId) -> Result<bool, BusError> {
        if !self.0.local.up(user) {
            return Ok(false);
        }
        Ok(self.0.record_here(user, true).await)
    }

    async fn disconnected(&self, user: UserId) -> Result<bool, BusError> {
        if !self.0.local.down(user) {
            return Ok(false);
        }
        Ok(self.0.record_here(user, false).await)
    }

    async fn online(&self, users: &[UserId]) -> Result<Vec<UserId>, BusError> {
        let elsewhere = match self.0.online_elsewhere(users).await {
            Ok(s) => s,
            Err(e) => {
                // Redis down: say what this node knows rather than fail the caller.
                tracing::debug!(error = %e, "presence from other nodes unavailable");
                HashSet::new()
            }
        };
        Ok(self.0.local.filter(users, |u| elsewhere.contains(&u)))
    }

    fn attach(&self, events: Weak<dyn NodeEvents>) {
        self.0.order.attach(events.clone());
        let _ = self.0.events.set(events);
    }

    fn shared(&self) -> bool {
        true
    }

    fn health(&self) -> &'static str {
        if self.0.link_up.load(Ordering::SeqCst) { "up" } else { "down" }
    }

    fn caches_exact(&self) -> bool {
        self.0.link_up.load(Ordering::SeqCst)
    }

    async fn take_shared(&self, key: &str, limit: u32, window_ms: u64) -> Option<bool> {
        // A fixed window per key: INCR, and the first increment sets the expiry.
        static SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
            redis::Script::new(
                "local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end return n",
            )
        });
        let window = (crate::chat::now_ms().max(0) as u64) / window_ms.max(1);
        let k = format!("{}:rl:{key}:{window}", self.0.prefix);
        let mut cmd = self.0.cmd.clone();
        match SCRIPT.key(k).arg(window_ms).invoke_async::<i64>(&mut cmd).await {
            Ok(n) => Some(n <= i64::from(limit)),
            Err(e) => {
                tracing::debug!(error = %e, "shared budget unavailable; the local limit applies");
                None
            }
        }
    }

    async fn claim(&self, key: &str, ttl_ms: u64) -> Option<bool> {
        // The claim holds the claimant's node id, so the claimant's own retry (its first
        // try failed half-way, say on a database error) is still its: a plain SET NX
        // answered it "no" too, and then nobody ever did the work.
        static SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
            redis::Script::new(
                "local v = redis.call('GET', KEYS[1]) \
                 if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end \
                 if v == ARGV[1] then return 1 end return 0",
            )
        });
        let k = format!("{}:claim:{key}", self.0.prefix);
        let mut cmd = self.0.cmd.clone();
        let set =
            SCRIPT.key(k).arg(format!("{:x}", self.0.node)).arg(ttl_ms.max(1)).invoke_async::<i64>(&mut cmd).await;
        match set {
            Ok(answer) => Some(answer == 1),
            Err(e) => {
                tracing::debug!(error = %e, "claim unavailable; this node acts");
                None
            }
        }
    }

    async fn shared_backoff(
        &self,
        key: &str,
        rule: &crate::auth::backoff::Rule,
        clear: bool,
    ) -> Option<Result<(), std::time::Duration>> {
        // `auth::backoff::Table::attempt` as one script: a running wait answers with
        // what is left of it; otherwise the attempt is counted (the count forgotten
        // after `forget`) and the wait it earns (`Rule::wait_after`) is set.
        static SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
            redis::Script::new(
                "if ARGV[1] == '1' then redis.call('DEL', KEYS[1], KEYS[2]) return 0 end \
                 local left = redis.call('PTTL', KEYS[2]) if left > 0 then return left end \
                 local n = redis.call('INCR', KEYS[1]) redis.call('PEXPIRE', KEYS[1], ARGV[5]) \
                 local free = tonumber(ARGV[2]) \
                 if n > free then \
                   local d = math.min(tonumber(ARGV[3]) * 2 ^ math.min(n - free - 1, 30), tonumber(ARGV[4])) \
                   redis.call('SET', KEYS[2], '1', 'PX', math.floor(d)) end \
                 return 0",
            )
        });
        let ms = |d: std::time::Duration| d.as_millis().clamp(1, u128::from(u32::MAX)) as u64;
        let mut cmd = self.0.cmd.clone();
        let answer = SCRIPT
            .key(format!("{}:bo:{key}:n", self.0.prefix))
            .key(format!("{}:bo:{key}:wait", self.0.prefix))
            .arg(if clear { "1" } else { "0" })
            .arg(rule.free)
            .arg(ms(rule.base))
            .arg(ms(rule.max))
            .arg(ms(rule.forget))
            .invoke_async::<i64>(&mut cmd)
            .await;
        match answer {
            Ok(left) if left > 0 => Some(Err(std::time::Duration::from_millis(left as u64))),
            Ok(_) => Some(Ok(())),
            Err(e) => {
                tracing::debug!(error = %e, "shared back-off unavailable; this node's table applies");
                None
            }
        }
    }

    async fn close(&self) {
        let inner = &self.0;
        // What is queued (people going offline as this node's sockets closed) goes
        // out first: the tasks end with the process.
        let queued = inner.queued.load(Ordering::SeqCst);
        let deadline = Instant::now() + CLOSE_FLUSH;
        while inner.sent.load(Ordering::SeqCst) < queued && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        inner.stopped.store(true, Ordering::SeqCst);
        let mut cmd = inner.cmd.clone();
        let _: Result<(), _> = redis::pipe()
            .zrem(inner.nodes_key(), format!("{:x}", inner.node))
            .del(inner.presence_key(inner.node))
            .query_async(&mut cmd)
            .await;
    }
}

/// The payload of one Redis message: the publishing node and envelopes of one topic
/// (the topic is the channel). Little-endian, length-prefixed:
/// `1u8 version, node u64, count u16, { seq i64 (-1: none), control u32 len + JSON,
/// frame u32 len (u32::MAX: none) + bytes }*`.
pub mod wire {
    use super::*;

    const VERSION: u8 = 1;
    const NONE: u32 = u32::MAX;

    #[derive(Debug, thiserror::Error, PartialEq, Eq)]
    pub enum WireError {
        #[error("truncated")]
        Truncated,
        #[error("unknown version {0}")]
        Version(u8),
        #[error("bad control: {0}")]
        Control(String),
    }

    pub fn encode(node: u64, envs: &[&Envelope]) -> Vec<u8> {
        let size: usize = envs.iter().map(|e| 32 + e.frame.as_ref().map_or(0, Bytes::len)).sum();
        let mut out = Vec::with_capacity(11 + size);
        out.push(VERSION);
        out.extend_from_slice(&node.to_le_bytes());
        let n = envs.len().min(u16::MAX as usize);
        out.extend_from_slice(&(n as u16).to_le_bytes());
        for e in envs.iter().take(n) {
            out.extend_from_slice(&e.seq.unwrap_or(-1).to_le_bytes());
            match e.control.as_ref().and_then(|c| serde_json::to_vec(c).ok()) {
                Some(c) => {
                    out.extend_from_slice(&(c.len() as u32).to_le_bytes());
                    out.extend_from_slice(&c);
                }
                None => out.extend_from_slice(&0u32.to_le_bytes()),
            }
            match &e.frame {
                Some(f) => {
                    out.extend_from_slice(&(f.len() as u32).to_le_bytes());
                    out.extend_from_slice(f);
                }
                None => out.extend_from_slice(&NONE.to_le_bytes()),
            }
        }
        out
    }

    struct Reader<'a>(&'a [u8]);

    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
            if self.0.len() < n {
                return Err(WireError::Truncated);
            }
            let (a, b) = self.0.split_at(n);
            self.0 = b;
            Ok(a)
        }
        fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
            self.take(N)?.try_into().map_err(|_| WireError::Truncated)
        }
    }

    pub fn decode(payload: &[u8], topic: Topic) -> Result<(u64, Vec<Envelope>), WireError> {
        let mut r = Reader(payload);
        let [v] = r.array::<1>()?;
        if v != VERSION {
            return Err(WireError::Version(v));
        }
        let node = u64::from_le_bytes(r.array()?);
        let n = u16::from_le_bytes(r.array()?);
        let mut envs = Vec::with_capacity(usize::from(n).min(payload.len() / 16 + 1));
        for _ in 0..n {
            let seq = i64::from_le_bytes(r.array()?);
            let clen = u32::from_le_bytes(r.array()?) as usize;
            let control = if clen == 0 {
                None
            } else {
                Some(serde_json::from_slice(r.take(clen)?).map_err(|e| WireError::Control(e.to_string()))?)
            };
            let flen = u32::from_le_bytes(r.array()?);
            let frame = if flen == NONE { None } else { Some(Bytes::copy_from_slice(r.take(flen as usize)?)) };
            envs.push(Envelope { topic, control, frame, seq: (seq >= 0).then_some(seq) });
        }
        Ok((node, envs))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn round_trip() {
            let a = Envelope {
                topic: Topic::Room(7),
                control: None,
                frame: Some(Bytes::from_static(br#"{"type":"message"}"#)),
                seq: Some(42),
            };
            let b = Envelope::control(Topic::Room(7), Control::Subscribe(7, 3), None);
            let c = Envelope::frame(Topic::Room(7), Bytes::new());
            let bytes = encode(99, &[&a, &b, &c]);
            let (node, back) = decode(&bytes, Topic::Room(7)).expect("decodes");
            assert_eq!(node, 99);
            assert_eq!(back.len(), 3);
            assert_eq!((back[0].seq, back[0].frame.as_deref()), (Some(42), Some(&br#"{"type":"message"}"#[..])));
            assert_eq!((back[1].control.clone(), back[1].frame.is_none()), (Some(Control::Subscribe(7, 3)), true));
            assert_eq!((back[2].seq, back[2].frame.as_deref()), (None, Some(&b""[..])));
        }

        #[test]
        fn every_truncation_is_an_error_never_a_panic() {
            let a = Envelope::control(Topic::User(1), Control::EndSession("h".into()), Some(Bytes::from_static(b"xy")));
            let bytes = encode(1, &[&a, &a]);
            for cut in 0..bytes.len() {
                assert!(decode(&bytes[..cut], Topic::User(1)).is_err(), "cut at {cut}");
            }
            assert!(decode(&[2], Topic::User(1)).is_err());
            // A count that claims more than is there.
            let mut lying = encode(1, &[]);
            lying[9] = 0xff;
            assert_eq!(decode(&lying, Topic::User(1)).err(), Some(WireError::Truncated));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two nodes on the Redis that scripts/test starts (RTM_TEST_REDIS_URL): a claim is
    /// the first asker's, and stays its when it asks again, as a node does when its
    /// first try at the claimed work failed half-way.
    #[tokio::test]
    async fn a_claim_is_the_first_askers_and_stays_its() {
        let url = std::env::var("RTM_TEST_REDIS_URL")
            .expect("RTM_TEST_REDIS_URL is not set: run the suite with scripts/test, which starts Redis");
        let mut rnd = [0u8; 6];
        getrandom::fill(&mut rnd).expect("random");
        let prefix = format!("rtmt{}", hex::encode(rnd));
        let a = RedisBus::connect(&url, &prefix, Arc::new(Hub::new())).await.expect("node a joins");
        let b = RedisBus::connect(&url, &prefix, Arc::new(Hub::new())).await.expect("node b joins");
        assert_eq!(a.claim("cli:1", 60_000).await, Some(true));
        assert_eq!(b.claim("cli:1", 60_000).await, Some(false));
        assert_eq!(a.claim("cli:1", 60_000).await, Some(true), "the claimant's retry is refused");
        assert_eq!(b.claim("cli:1", 60_000).await, Some(false));
        assert_eq!(b.claim("cli:2", 60_000).await, Some(true));
        assert_eq!(a.claim("cli:2", 60_000).await, Some(false));
        // The claim goes with its time.
        assert_eq!(a.claim("cli:3", 50).await, Some(true));
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(b.claim("cli:3", 60_000).await, Some(true));
        a.close().await;
        b.close().await;
    }
}
