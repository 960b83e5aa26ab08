//! Per-room order on one node of several. Each node's pipeline publishes its own
//! commits in seq order, but two nodes committing to one room at the same moment
//! interleave their seqs, and their publications can cross on Redis; Redis pub/sub
//! also drops messages (a restart, a resubscription race, an overflowing subscriber).
//! So every kept room event this node delivers passes through here: the next seq goes
//! out at once, a later one is held, and a gap still open after [`HOLD`] is filled
//! from the store (the truth), never skipped. A room is tracked only while this node
//! has local subscribers to it, starting from the seq those subscribers were told.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, OnceLock, Weak},
    time::Duration,
};

use parking_lot::Mutex;

use super::NodeEvents;
use crate::{
    domain::{RoomId, Seq},
    hub::{Envelope, Hub, Topic},
};

/// How long a later event waits for the one before it before the store fills the gap.
/// Crossing publications arrive within a millisecond or two of each other; a lost one
/// never arrives, and costs this much latency once.
pub const HOLD: Duration = Duration::from_millis(100);
/// Events read from the store per query while filling a gap.
const FILL_PAGE: i64 = 500;
/// Held events beyond which a room is filled at once instead of after `HOLD`.
const MAX_HELD: usize = 10_000;

struct RoomState {
    /// The newest seq handed to local subscribers (or known to them already).
    delivered: Seq,
    /// Later events waiting for the ones before them.
    held: BTreeMap<Seq, Envelope>,
    /// A fill task is running for this room.
    filling: bool,
}

pub struct Order {
    hub: Arc<Hub>,
    rooms: Mutex<HashMap<RoomId, RoomState>>,
    /// Held while computing and handing out a batch: two publishers (the local
    /// pipeline, the Redis receiver, a fill) must not overtake each other between
    /// deciding what goes out and queuing it. Never taken by the hub's watcher
    /// callbacks, which only touch `rooms`.
    dispatch: Mutex<()>,
    events: OnceLock<Weak<dyn NodeEvents>>,
}

impl Order {
    pub fn new(hub: Arc<Hub>) -> Arc<Self> {
        Arc::new(Order { hub, rooms: Mutex::new(HashMap::new()), dispatch: Mutex::new(()), events: OnceLock::new() })
    }

    pub fn attach(&self, events: Weak<dyn NodeEvents>) {
        let _ = self.events.set(events);
    }

    /// This node starts serving `room`; its subscribers know everything up to `seq`.
    pub fn watch(&self, room: RoomId, seq: Seq) {
        self.rooms.lock().entry(room).or_insert(RoomState { delivered: seq, held: BTreeMap::new(), filling: false });
    }

    /// This node no longer serves `room`.
    pub fn unwatch(&self, room: RoomId) {
        self.rooms.lock().remove(&room);
    }

    /// Rooms this node serves.
    pub fn watched(&self) -> Vec<RoomId> {
        self.rooms.lock().keys().copied().collect()
    }

    /// Puts envelopes through and hands what may go out to the hub, in order. Kept
    /// room events go out in seq order, once; the rest (typing, presence, controls)
    /// goes out as it comes.
    pub fn admit(self: &Arc<Self>, envs: Vec<Envelope>) {
        let _turn = self.dispatch.lock();
        let mut out = Vec::with_capacity(envs.len());
        let mut gaps = Vec::new();
        {
            let mut rooms = self.rooms.lock();
            for env in envs {
                let (Topic::Room(room), Some(seq)) = (env.topic, env.seq) else {
                    out.push(env);
                    continue;
                };
                // No local subscriber: nothing to deliver here.
                let Some(st) = rooms.get_mut(&room) else { continue };
                if seq <= st.delivered {
                    continue;
                }
                if seq == st.delivered + 1 {
                    st.delivered = seq;
                    out.push(env);
                    release(st, &mut out);
                    continue;
                }
                st.held.insert(seq, env);
                if !st.filling {
                    st.filling = true;
                    gaps.push((room, st.held.len() >= MAX_HELD));
                }
            }
        }
        if !out.is_empty() {
            self.hub.dispatch_batch(&out);
        }
        drop(_turn);
        for (room, now) in gaps {
            self.spawn_fill(room, None, if now { Duration::ZERO } else { HOLD });
        }
    }

    /// Makes sure every room listed is delivered up to what the store holds: for
    /// rooms just subscribed on Redis, after a reconnect, and periodically.
    pub fn catch_up(self: &Arc<Self>, rooms: Vec<RoomId>) {
        if rooms.is_empty() {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let Some(events) = me.events.get().and_then(Weak::upgrade) else { return };
            for chunk in rooms.chunks(500) {
                let last = match events.last_seqs(chunk).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read rooms' newest seqs to catch up");
                        return;
                    }
                };
                for (room, last) in last {
                    let start = {
                        let mut rooms = me.rooms.lock();
                        match rooms.get_mut(&room) {
                            Some(st) if st.delivered < last && !st.filling => {
                                st.filling = true;
                                true
                            }
                            _ => false,
                        }
                    };
                    if start {
                        me.spawn_fill(room, Some(last), Duration::ZERO);
                    }
                }
            }
        });
    }

    /// Fills `room` from the store after `wait`: up to `upto`, or up to the event
    /// before the first held one, until nothing is held. The caller set `filling`.
    fn spawn_fill(self: &Arc<Self>, room: RoomId, upto: Option<Seq>, wait: Duration) {
        let me = self.clone();
        tokio::spawn(async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let mut upto = upto;
            loop {
                // What is still missing? (The dispatch turn first, as in `admit`.)
                let (after, until) = {
                    let turn = me.dispatch.lock();
                    let mut rooms = me.rooms.lock();
                    let Some(st) = rooms.get_mut(&room) else { return };
                    let until = match (upto.take(), st.held.keys().next()) {
                        (Some(u), Some(h)) => u.max(*h - 1),
                        (Some(u), None) => u,
                        (None, Some(h)) => *h - 1,
                        (None, None) => st.delivered,
                    };
                    if until <= st.delivered {
                        // Nothing missing below what is held: release it; stop once
                        // nothing is held (what stays held has a gap of its own).
                        let mut out = Vec::new();
                        release(st, &mut out);
                        let done = st.held.is_empty();
                        if done {
                            st.filling = false;
                        }
                        drop(rooms);
                        if !out.is_empty() {
                            me.hub.dispatch_batch(&out);
                        }
                        drop(turn);
                        if done {
                            return;
                        }
                        continue;
                    }
                    (st.delivered, until)
                };
                let Some(events) = me.events.get().and_then(Weak::upgrade) else { return };
                match events.events_between(room, after, until, FILL_PAGE).await {
                    Ok(found) => {
                        let full_page = found.len() as i64 >= FILL_PAGE;
                        // A full page may stop short of `until`: settle only what it
                        // covered. Otherwise every seq up to `until` is settled: what
                        // the store no longer has (retention) is gone for good.
                        let settled = if full_page { found.last().map_or(until, |(s, _)| *s) } else { until };
                        me.apply_fill(room, found, settled);
                        if full_page {
                            upto = Some(until);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, room_id = room, "cannot fill a gap from the store; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        upto = Some(until);
                    }
                }
            }
        });
    }

    /// Delivers events read from the store and counts every seq up to `settled` as
    /// delivered, then releases what was held behind them.
    fn apply_fill(&self, room: RoomId, found: Vec<(Seq, bytes::Bytes)>, settled: Seq) {
        let _turn = self.dispatch.lock();
        let mut out = Vec::new();
        {
            let mut rooms = self.rooms.lock();
            let Some(st) = rooms.get_mut(&room) else { return };
            for (seq, frame) in found {
                if seq <= st.delivered {
                    continue;
                }
                st.held.remove(&seq);
                st.delivered = seq;
                out.push(Envelope { topic: Topic::Room(room), control: None, frame: Some(frame), seq: Some(seq) });
            }
            st.delivered = st.delivered.max(settled);
            release(st, &mut out);
        }
        if !out.is_empty() {
            self.hub.dispatch_batch(&out);
        }
    }
}

/// Moves held events that are now next in line to `out`, dropping held ones that are
/// no longer new.
fn release(st: &mut RoomState, out: &mut Vec<Envelope>) {
    while let Some((&seq, _)) = st.held.first_key_value() {
        if seq <= st.delivered {
            st.held.pop_first();
        } else if seq == st.delivered + 1 {
            if let Some((_, env)) = st.held.pop_first() {
                st.delivered = seq;
                out.push(env);
            }
        } else {
            break;
        }
    }
}
