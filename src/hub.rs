//! Per-node routing: which local connections listen to which topic, and handing them
//! frames. A frame arrives here already encoded (`Bytes`, reference-counted): fan-out
//! to a thousand members clones a pointer a thousand times, never the JSON. Each
//! connection has a bounded outbox ([`Outbox`]) that writes straight to its socket
//! when it can; a connection whose outbox is full is a slow consumer and is told to
//! close (it resumes on reconnect) instead of growing memory.
//! Control events (subscribe a user's connections to a room, end sessions) are applied
//! here, synchronously, so a frame published right after a subscribe reaches the new
//! subscriber. A [`TopicWatcher`] (the Redis bus) hears when a topic gains its first
//! local connection or loses its last, so a node listens on Redis only to the rooms
//! and users it serves.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::{net::TcpStream, sync::Notify};

pub use crate::ws::outbox::Frame;
use crate::{
    domain::{RoomId, Seq, UserId},
    ws::outbox::{Offer, Outbox},
};

/// Where an event goes: everyone in a room, every connection of one user, or every
/// node itself (cache invalidations; no connection listens there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    Room(RoomId),
    User(UserId),
    Nodes,
}

/// Membership and session changes that a node must apply to its local connections,
/// and (on `Topic::Nodes`) changes that invalidate what other nodes cached.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Control {
    /// The user's connections start receiving this room, whose newest event then was
    /// the given seq (a node that starts serving the room delivers from there on).
    Subscribe(RoomId, Seq),
    /// The user's connections stop receiving this room.
    Unsubscribe(RoomId),
    /// Close the user's connections made with this session (by token hash).
    EndSession(String),
    /// Close the user's cookie-session connections except those of this session, if
    /// any (a password change: API tokens stay valid, so their sockets stay).
    EndSessionsExcept(Option<String>),
    /// Close the user's cookie-session connections whose session is not one of these.
    /// A node replaying a CLI `end-sessions` sends the sessions alive by then: they were
    /// signed in after the CLI ended the others, and their sockets stay.
    EndSessionsNotIn(Vec<String>),
    /// Close every connection of the user, however made (the account was disabled).
    EndAll,
    /// Close every connection of the user, however made: it lost the admin role, and
    /// a socket keeps the powers of its handshake (API-token sockets too).
    Demoted,
    /// As `Demoted`, but sparing connections of these sessions: a node replaying a CLI
    /// `demote` sends the sessions signed in since, whose sockets never had the powers.
    DemotedExcept(Vec<String>),
    /// Close the user's connections made with this API token (revoked).
    EndToken(i64),
    /// (Topic::Nodes) A room's settings or members changed: drop cached copies.
    RoomChanged(RoomId),
    /// (Topic::Nodes) A user's profile changed: drop cached rooms they are in.
    UserChanged(UserId),
    /// (Topic::Nodes) A server setting (the registration mode) changed.
    SettingsChanged,
    /// (Topic::Nodes) Presence changes the sending node published may not have reached
    /// the others (it could not publish for a while, or its presence set in Redis was
    /// lost and is written again): refresh the presence of the rooms you serve.
    PresenceStale,
}

/// Hears when a topic gains its first local connection (with the seq the connection
/// was told is the room's newest, for rooms) or loses its last. Called under the hub's
/// lock: it must not call back into the hub.
pub trait TopicWatcher: Send + Sync {
    fn first(&self, topic: Topic, seq: Option<Seq>);
    fn last(&self, topic: Topic);
}

/// What travels on the bus: a frame for a topic, optionally with a control to apply
/// (to a `Topic::User`) before the frame is handed out. `seq` is the kept event's
/// sequence number, by which a node orders a room's events from several publishers.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub topic: Topic,
    pub control: Option<Control>,
    pub frame: Option<Bytes>,
    pub seq: Option<Seq>,
}

impl Envelope {
    /// A frame for a topic.
    pub fn frame(topic: Topic, frame: Bytes) -> Self {
        Envelope { topic, control: None, frame: Some(frame), seq: None }
    }
    /// A control, with or without a frame.
    pub fn control(topic: Topic, control: Control, frame: Option<Bytes>) -> Self {
        Envelope { topic, control: Some(control), frame, seq: None }
    }
}

/// Why the server closes a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    pub code: &'static str,
    pub reason: String,
}

pub type ConnId = u64;

/// Members written to by one task during a fan-out.
const WRITE_CHUNK: usize = 64;
/// From this many sockets to write, a fan-out is split over at least two tasks, so the
/// other core takes half (a runtime worker with two tasks queued wakes an idle one to
/// steal). Below it the publisher writes them itself: a DM's one or two writes cost
/// less than a task hand-off. Issue 16: twenty 50-member rooms had every commit's
/// writes done by the pipeline task, in series, on one core.
const SPREAD_FROM: usize = 16;

/// Writes the queued frames of connections whose writing a fan-out took over.
fn write_all(conns: &[Arc<Conn>]) {
    for conn in conns {
        if conn.shared.out.write_queued() == Offer::Failed {
            conn.shared.close_with("write_failed", "");
        }
    }
}

/// The parts of a connection other tasks need.
pub struct ConnShared {
    /// Set once when the connection must close; the session reads it and says why.
    close: Mutex<Option<CloseReason>>,
    pub notify: Notify,
    /// The socket's write side and the frames waiting for it.
    pub out: Outbox,
}

impl ConnShared {
    /// A connection's shared state around its socket; at most `frames` frames and
    /// `bytes` bytes may wait to be written.
    pub fn new(tcp: TcpStream, frames: usize, bytes: usize) -> Arc<Self> {
        Arc::new(ConnShared { close: Mutex::new(None), notify: Notify::new(), out: Outbox::new(tcp, frames, bytes) })
    }
    pub fn close_with(&self, code: &'static str, reason: impl Into<String>) {
        let mut c = self.close.lock();
        if c.is_none() {
            *c = Some(CloseReason { code, reason: reason.into() });
        }
        drop(c);
        self.notify.notify_one();
    }
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close.lock().clone()
    }
}

struct Conn {
    user: UserId,
    /// How the connection authenticated: a session (token hash) or an API token id.
    session: Option<String>,
    token: Option<i64>,
    /// Set when a subscribe/unsubscribe for this user arrives; lets a starting
    /// connection notice that the room list it loaded may already be stale.
    membership_changed: std::sync::atomic::AtomicBool,
    shared: Arc<ConnShared>,
}

#[derive(Default)]
struct Inner {
    topics: HashMap<Topic, HashMap<ConnId, Arc<Conn>>>,
    conns: HashMap<ConnId, (Arc<Conn>, HashSet<Topic>)>,
}

pub struct Hub {
    inner: RwLock<Inner>,
    next_id: AtomicU64,
    /// Connections cut off for falling behind, for metrics and tests.
    pub slow_consumers: AtomicU64,
    /// Most bytes that may wait in one connection's outbox.
    outbox_bytes: usize,
    /// Told when topics appear and disappear here (several nodes: the Redis bus).
    watcher: std::sync::OnceLock<Arc<dyn TopicWatcher>>,
}

/// Default of `--outbox-bytes`.
pub const DEFAULT_OUTBOX_BYTES: usize = 8 * 1024 * 1024;

impl Default for Hub {
    fn default() -> Self {
        Hub::with_outbox_bytes(DEFAULT_OUTBOX_BYTES)
    }
}

impl Hub {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_outbox_bytes(outbox_bytes: usize) -> Self {
        Hub {
            inner: Default::default(),
            next_id: AtomicU64::new(0),
            slow_consumers: AtomicU64::new(0),
            outbox_bytes,
            watcher: Default::default(),
        }
    }

    /// Sets who hears about topics appearing and disappearing (once).
    pub fn set_watcher(&self, w: Arc<dyn TopicWatcher>) {
        let _ = self.watcher.set(w);
    }

    /// Adds a connection to a topic, telling the watcher if the topic is new here.
    fn join_topic(&self, g: &mut Inner, t: Topic, seq: Option<Seq>, id: ConnId, conn: Arc<Conn>) {
        let m = g.topics.entry(t).or_default();
        if m.is_empty()
            && let Some(w) = self.watcher.get()
        {
            w.first(t, seq);
        }
        m.insert(id, conn);
    }

    /// Removes a connection from a topic, telling the watcher if it was the last.
    fn leave_topic(&self, g: &mut Inner, t: Topic, id: ConnId) {
        if let Some(m) = g.topics.get_mut(&t) {
            m.remove(&id);
            if m.is_empty() {
                g.topics.remove(&t);
                if let Some(w) = self.watcher.get() {
                    w.last(t);
                }
            }
        }
    }

    /// Most bytes that may wait in one connection's outbox.
    pub fn outbox_bytes(&self) -> usize {
        self.outbox_bytes
    }

    /// Registers a connection subscribed to `user`'s topic and to `rooms` (each with
    /// the newest seq the connection knows of).
    pub fn register(
        &self,
        user: UserId,
        auth: (Option<String>, Option<i64>),
        rooms: &[(RoomId, Seq)],
        shared: Arc<ConnShared>,
    ) -> ConnId {
        let (session, token) = auth;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let conn = Arc::new(Conn {
            user,
            session,
            token,
            membership_changed: std::sync::atomic::AtomicBool::new(false),
            shared,
        });
        let mut topics: HashSet<Topic> = rooms.iter().map(|(r, _)| Topic::Room(*r)).collect();
        topics.insert(Topic::User(user));
        let mut g = self.inner.write();
        self.join_topic(&mut g, Topic::User(user), None, id, conn.clone());
        for (r, seq) in rooms {
            self.join_topic(&mut g, Topic::Room(*r), Some(*seq), id, conn.clone());
        }
        g.conns.insert(id, (conn, topics));
        id
    }

    /// Adds the rooms a starting connection loaded, unless a membership change for its
    /// user arrived since it registered (or since its last try): then the list may be
    /// stale and the caller loads it again. Returns whether the rooms were added.
    pub fn subscribe_initial(&self, id: ConnId, rooms: &[(RoomId, Seq)]) -> bool {
        let mut g = self.inner.write();
        let Some((conn, topics)) = g.conns.get_mut(&id) else { return false };
        if conn.membership_changed.swap(false, Ordering::SeqCst) {
            return false;
        }
        let conn = conn.clone();
        for (r, _) in rooms {
            topics.insert(Topic::Room(*r));
        }
        for (r, seq) in rooms {
            self.join_topic(&mut g, Topic::Room(*r), Some(*seq), id, conn.clone());
        }
        true
    }

    /// Removes a connection; returns the rooms it was listening to.
    pub fn unregister(&self, id: ConnId) -> Vec<RoomId> {
        let mut g = self.inner.write();
        let mut rooms = Vec::new();
        if let Some((_, topics)) = g.conns.remove(&id) {
            for t in topics {
                if let Topic::Room(r) = t {
                    rooms.push(r);
                }
                self.leave_topic(&mut g, t, id);
            }
        }
        rooms
    }

    /// Number of local connections of a user.
    pub fn user_connections(&self, user: UserId) -> usize {
        self.inner.read().topics.get(&Topic::User(user)).map_or(0, HashMap::len)
    }

    /// Applies an envelope's control, then hands its frame to every local subscriber.
    pub fn dispatch(&self, env: &Envelope) {
        self.dispatch_batch(std::slice::from_ref(env));
    }

    /// Dispatches envelopes in order: every frame is queued to every subscriber first,
    /// then the sockets are written, each once. A member of several rooms of one
    /// commit gets all their events in one write (one JSON array), as does a room's
    /// member that several events of the batch are for.
    pub fn dispatch_batch(&self, envs: &[Envelope]) {
        let mut owned = Vec::new();
        for env in envs {
            if let Some(ctl) = &env.control {
                self.apply(env.topic, ctl);
            }
            let Some(frame) = &env.frame else { continue };
            let frame: Frame = Arc::new(frame.clone());
            // The subscribers are copied out first: (un)registering connections must
            // not wait for a fan-out.
            let subs: Vec<Arc<Conn>> =
                self.inner.read().topics.get(&env.topic).map(|m| m.values().cloned().collect()).unwrap_or_default();
            crate::metrics::DELIVERIES.add(subs.len());
            for conn in subs {
                match conn.shared.out.enqueue(frame.clone()) {
                    Ok(true) => owned.push(conn),
                    Ok(false) => {}
                    Err(o) => self.refused(&conn.shared, o),
                }
            }
        }
        // A fan-out's writes are spread over tasks (at least two, at most 64 sockets
        // each), so both cores share it and the caller (the pipeline) is not held up
        // by it; a small one is written here.
        match tokio::runtime::Handle::try_current() {
            Ok(rt) if owned.len() >= SPREAD_FROM => {
                let tasks = owned.len().div_ceil(WRITE_CHUNK).max(2);
                let per = owned.len().div_ceil(tasks);
                while !owned.is_empty() {
                    let chunk: Vec<_> = owned.drain(..owned.len().min(per)).collect();
                    rt.spawn(async move { write_all(&chunk) });
                }
            }
            _ => write_all(&owned),
        }
    }

    /// Acts on what an outbox said about a frame: a full one is a slow consumer, a
    /// failed one a dead connection.
    pub fn refused(&self, shared: &ConnShared, o: Offer) {
        match o {
            // Closed: the connection is closing; its session unregisters it.
            Offer::Taken | Offer::Closed => {}
            Offer::Full => {
                self.slow_consumers.fetch_add(1, Ordering::Relaxed);
                shared.close_with("slow_consumer", "you fell too far behind; reconnect and resume");
            }
            Offer::Failed => shared.close_with("write_failed", ""),
        }
    }

    fn apply(&self, topic: Topic, ctl: &Control) {
        let Topic::User(user) = topic else { return };
        match ctl {
            Control::Subscribe(room, _) | Control::Unsubscribe(room) => {
                let mut g = self.inner.write();
                let ids: Vec<ConnId> = g.topics.get(&topic).map(|m| m.keys().copied().collect()).unwrap_or_default();
                let t = Topic::Room(*room);
                for id in ids {
                    let Some((conn, topics)) = g.conns.get_mut(&id) else {
                        continue;
                    };
                    let conn = conn.clone();
                    conn.membership_changed.store(true, Ordering::SeqCst);
                    if let Control::Subscribe(_, seq) = ctl {
                        topics.insert(t);
                        self.join_topic(&mut g, t, Some(*seq), id, conn);
                    } else {
                        topics.remove(&t);
                        self.leave_topic(&mut g, t, id);
                    }
                }
            }
            Control::EndSession(hash) => self.close_user_conns(
                user,
                |c| c.session.as_deref() == Some(hash.as_str()),
                "session_ended",
                "signed out",
            ),
            Control::EndSessionsExcept(keep) => self.close_user_conns(
                user,
                |c| c.session.is_some() && c.session.as_deref() != keep.as_deref(),
                "session_ended",
                "your sessions were ended",
            ),
            Control::EndSessionsNotIn(live) => self.close_user_conns(
                user,
                |c| c.session.as_ref().is_some_and(|s| !live.contains(s)),
                "session_ended",
                "your sessions were ended",
            ),
            Control::EndAll => self.close_user_conns(user, |_| true, "session_ended", "your account was disabled"),
            Control::Demoted => {
                self.close_user_conns(user, |_| true, "session_ended", "your admin rights were removed")
            }
            Control::DemotedExcept(live) => self.close_user_conns(
                user,
                |c| !c.session.as_ref().is_some_and(|s| live.contains(s)),
                "session_ended",
                "your admin rights were removed",
            ),
            Control::EndToken(id) => {
                self.close_user_conns(user, |c| c.token == Some(*id), "session_ended", "the API token was revoked")
            }
            // For the nodes themselves (the bus hands them to `chat`), not connections.
            Control::RoomChanged(_) | Control::UserChanged(_) | Control::SettingsChanged | Control::PresenceStale => {}
        }
    }

    fn close_user_conns(&self, user: UserId, pick: impl Fn(&Conn) -> bool, code: &'static str, reason: &str) {
        let g = self.inner.read();
        if let Some(m) = g.topics.get(&Topic::User(user)) {
            for conn in m.values() {
                if conn.user == user && pick(conn) {
                    conn.shared.close_with(code, reason);
                }
            }
        }
    }

    /// Total local connections.
    pub fn connection_count(&self) -> usize {
        self.inner.read().conns.len()
    }

    /// Asks every local connection to close (server shutdown).
    pub fn close_all(&self, code: &'static str, reason: &str) {
        for (conn, _) in self.inner.read().conns.values() {
            conn.shared.close_with(code, reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::outbox::tests::{client_reads, read_all};

    /// A connection whose outbox holds two frames.
    async fn connect(
        hub: &Hub,
        l: &tokio::net::TcpListener,
        user: UserId,
        rooms: &[RoomId],
    ) -> (Arc<ConnShared>, TcpStream) {
        connect_with(hub, l, user, rooms, 2).await
    }

    async fn connect_with(
        hub: &Hub,
        l: &tokio::net::TcpListener,
        user: UserId,
        rooms: &[RoomId],
        frames: usize,
    ) -> (Arc<ConnShared>, TcpStream) {
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        let shared = ConnShared::new(server, frames, 1 << 20);
        let rooms: Vec<(RoomId, Seq)> = rooms.iter().map(|r| (*r, 0)).collect();
        hub.register(user, (None, None), &rooms, shared.clone());
        (shared, client)
    }

    fn env(topic: Topic, control: Option<Control>, frame: Option<&'static str>) -> Envelope {
        Envelope { topic, control, frame: frame.map(|f| Bytes::from_static(f.as_bytes())), seq: None }
    }

    #[tokio::test]
    async fn fanout_subscribe_and_slow_consumer() {
        let hub = Hub::new();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (a, mut a_client) = connect(&hub, &l, 1, &[10]).await;
        let (b, mut b_client) = connect(&hub, &l, 2, &[]).await;
        // c never gets its hello: its frames wait, and its outbox holds two.
        let (c, _c_client) = connect(&hub, &l, 3, &[10]).await;
        for s in [&a, &b] {
            s.out.open(Arc::new(Bytes::from_static(b"{}")));
        }
        hub.dispatch(&env(Topic::Room(10), None, Some(r#"{"x":1}"#)));
        hub.dispatch(&env(Topic::User(2), Some(Control::Subscribe(10, 0)), None));
        hub.dispatch(&env(Topic::Room(10), None, Some(r#"{"y":1}"#)));
        assert!(c.close_reason().is_none(), "two frames fit");
        hub.dispatch(&env(Topic::Room(10), None, Some(r#"{"z":1}"#)));
        assert_eq!(c.close_reason().map(|r| r.code), Some("slow_consumer"));
        assert_eq!(hub.slow_consumers.load(Ordering::Relaxed), 1);
        assert!(a.close_reason().is_none() && b.close_reason().is_none());
        assert_eq!(client_reads(&read_all(&mut a_client).await), ["{}", r#"{"x":1}"#, r#"{"y":1}"#, r#"{"z":1}"#]);
        assert_eq!(client_reads(&read_all(&mut b_client).await), ["{}", r#"{"y":1}"#, r#"{"z":1}"#]);
        hub.dispatch(&env(Topic::User(2), Some(Control::EndAll), None));
        assert_eq!(b.close_reason().map(|r| r.code), Some("session_ended"));
        let rooms = hub.unregister(1);
        assert_eq!(rooms, [10]);
        assert_eq!(hub.connection_count(), 2);
    }

    #[tokio::test]
    async fn a_batch_reaches_each_socket_in_one_write() {
        let hub = Hub::new();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (a, mut a_client) = connect_with(&hub, &l, 1, &[10, 11], 16).await;
        a.out.open(Arc::new(Bytes::from_static(b"{}")));
        let batch = [
            env(Topic::Room(10), None, Some(r#"{"m":1}"#)),
            env(Topic::Room(11), None, Some(r#"{"m":2}"#)),
            env(Topic::Room(12), None, Some(r#"{"m":3}"#)),
            env(Topic::Room(10), None, Some(r#"[{"m":4},{"m":5}]"#)),
        ];
        hub.dispatch_batch(&batch);
        // Three events of the batch are for this socket: one frame, one array, in order.
        assert_eq!(client_reads(&read_all(&mut a_client).await), ["{}", r#"[{"m":1},{"m":2},{"m":4},{"m":5}]"#]);
        assert!(a.close_reason().is_none());
    }
}
