//! Presence: a person is online while at least one of their connections is open, and
//! each room's other members hear when that changes. Live only: never stored, never
//! replayed; a connection gets the current list of each of its rooms when it starts.
//!
//! In a big room every change would reach every member: a thousand people connecting
//! to a 1,000-member room is a million `presence_change` frames, a write to every
//! member's socket for each. So a room of [`BATCH_FROM`] members or more gathers its
//! changes for [`WINDOW`] and sends them as ONE frame, a JSON array of
//! `presence_change` objects (the latest change per person), published once: a write
//! per member per window instead of per change. Clients already read arrays
//! (docs/PROTOCOL.md §3.3, §3.5), so old clients keep working. Smaller rooms hear each
//! change at once, as before.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use parking_lot::Mutex;

use super::{Actor, Chat, ChatResult};
use crate::{
    bus::DynBus,
    domain::{RoomId, UserId},
    hub::{Envelope, Topic},
    ws::{
        outbox::MAX_COALESCE,
        protocol::{RoomInfo, ServerFrame, encode_batch},
    },
};

/// Rooms with at least this many members batch their presence changes.
pub const BATCH_FROM: usize = 100;
/// How long a big room gathers presence changes before sending them.
pub const WINDOW: Duration = Duration::from_millis(250);

/// Users asked about in one presence question to the bus when a node refreshes the
/// presence of every room it serves.
const PRESENCE_QUERY: usize = 5000;

/// Presence changes (who, online?) waiting for their window, per room, in order.
type Pending = HashMap<RoomId, Vec<(UserId, bool)>>;

/// Big rooms' presence changes waiting for their window.
#[derive(Default)]
pub(super) struct Batcher {
    pending: Arc<Mutex<Pending>>,
    /// `disconnected` calls still running: a stopping node waits for them, so the
    /// other nodes hear that its people went offline.
    leaving: AtomicUsize,
}

/// Counts one running `disconnected` call for as long as it lives.
struct Leaving<'a>(&'a AtomicUsize);

impl<'a> Leaving<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Leaving(count)
    }
}

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Publishes one room's window of changes.
async fn publish_window(bus: &DynBus, room: RoomId, changes: &[(UserId, bool)]) {
    let envs: Vec<Envelope> =
        window_frames(room, changes).into_iter().map(|f| Envelope::frame(Topic::Room(room), f)).collect();
    if !envs.is_empty()
        && let Err(e) = bus.publish_batch(envs).await
    {
        tracing::warn!(error = %e, room, "publishing presence changes failed");
    }
}

impl Batcher {
    /// Queues a change; the first change of a room's window starts the timer that
    /// publishes the window's frame.
    fn push(&self, bus: &DynBus, room: RoomId, user: UserId, online: bool) {
        let mut p = self.pending.lock();
        let list = p.entry(room).or_default();
        let first = list.is_empty();
        list.push((user, online));
        drop(p);
        if !first {
            return;
        }
        let (pending, bus) = (self.pending.clone(), bus.clone());
        tokio::spawn(async move {
            tokio::time::sleep(WINDOW).await;
            // Empty when a shutdown sent the window already (`flush`).
            let changes = pending.lock().remove(&room).unwrap_or_default();
            publish_window(&bus, room, &changes).await;
        });
    }

    /// Sends every window now, without waiting for its end (the node is stopping).
    async fn flush(&self, bus: &DynBus) {
        let all: Vec<(RoomId, Vec<(UserId, bool)>)> = self.pending.lock().drain().collect();
        for (room, changes) in all {
            publish_window(bus, room, &changes).await;
        }
    }
}

/// The frames of a window: one `presence_change` per person, their latest, in the
/// order people first changed, as arrays of at most `MAX_COALESCE` (the protocol's
/// bound on an array); a lone change goes as a plain object.
fn window_frames(room: RoomId, changes: &[(UserId, bool)]) -> Vec<bytes::Bytes> {
    let mut latest: Vec<(UserId, bool)> = Vec::with_capacity(changes.len());
    let mut at: HashMap<UserId, usize> = HashMap::with_capacity(changes.len());
    for &(user, online) in changes {
        match at.get(&user) {
            Some(&i) => latest[i].1 = online,
            None => {
                at.insert(user, latest.len());
                latest.push((user, online));
            }
        }
    }
    let frames: Vec<ServerFrame> =
        latest.into_iter().map(|(user, online)| ServerFrame::PresenceChange { room, user, online }).collect();
    frames
        .chunks(MAX_COALESCE)
        .map(|c| match c {
            [one] => one.encode(),
            _ => encode_batch(c),
        })
        .collect()
}

impl Chat {
    /// A connection of `actor` opened; `rooms` are the rooms it listens to.
    pub async fn connected(&self, actor: &Actor, rooms: &[RoomInfo]) -> ChatResult<()> {
        if self.bus.connected(actor.user.id).await? {
            for r in rooms {
                self.presence_change(r.id, actor.user.id, true).await?;
            }
        }
        Ok(())
    }

    /// A connection of `user` closed; `rooms` are the rooms it listened to at the end.
    pub async fn disconnected(&self, user: UserId, rooms: &[RoomId]) -> ChatResult<()> {
        let _leaving = Leaving::new(&self.presence_batch.leaving);
        if self.bus.disconnected(user).await? {
            // The admin console's "last seen": one write when the person goes offline
            // (not per socket, so a restart's reconnect storm writes once per person).
            if let Err(e) = self.store.touch_last_seen(user, super::now_ms()).await {
                tracing::warn!(error = %e, user_id = user, "cannot record when the user was last seen");
            }
            for r in rooms {
                self.presence_change(*r, user, false).await?;
            }
        }
        Ok(())
    }

    /// For a stopping node, once its connections are closed: waits (until `deadline`)
    /// for their `disconnected` calls, then sends the big rooms' windows at once. The
    /// process may end right after, and with it any timer still waiting: the other
    /// nodes would show these people online for good.
    pub async fn settle_presence(&self, deadline: tokio::time::Instant) {
        while self.presence_batch.leaving.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.presence_batch.flush(&self.bus).await;
    }

    /// Tells a room that a member came online or went offline: at once in a small
    /// room, with the room's window in a big one.
    async fn presence_change(&self, room: RoomId, user: UserId, online: bool) -> ChatResult<()> {
        let big = self.room_entry(room).await.is_ok_and(|e| e.members.len() >= BATCH_FROM);
        if big {
            self.presence_batch.push(&self.bus, room, user, online);
            Ok(())
        } else {
            self.publish(Topic::Room(room), &ServerFrame::PresenceChange { room, user, online }).await
        }
    }

    /// The `presence` frame of a room: who among its members is online now.
    pub async fn presence_frame(&self, room: RoomId) -> ChatResult<ServerFrame> {
        let e = self.room_entry(room).await?;
        let ids: Vec<UserId> = e.members.iter().copied().collect();
        let mut online = self.bus.online(&ids).await?;
        online.sort_unstable();
        Ok(ServerFrame::Presence { room, online })
    }

    /// The `presence` frame of each of these rooms, encoded: what this node sends its
    /// connections when presence changes from other nodes may have been lost on the
    /// way (`bus::NodeEvents::presence_frames`). One question to the bus for all the
    /// rooms' members together; a room that cannot be read (deleted meanwhile) is
    /// left out.
    pub(super) async fn presence_frames(&self, rooms: &[RoomId]) -> Vec<(RoomId, Bytes)> {
        let mut members: Vec<(RoomId, Vec<UserId>)> = Vec::with_capacity(rooms.len());
        for &room in rooms {
            match self.room_entry(room).await {
                Ok(e) => members.push((room, e.members.iter().copied().collect())),
                Err(e) => tracing::debug!(error = %e, room, "no presence refresh for this room"),
            }
        }
        let everyone: Vec<UserId> =
            members.iter().flat_map(|(_, m)| m.iter().copied()).collect::<HashSet<_>>().into_iter().collect();
        let mut online = HashSet::with_capacity(everyone.len());
        // Bounded questions: a node may serve rooms with a great many members.
        for chunk in everyone.chunks(PRESENCE_QUERY) {
            match self.bus.online(chunk).await {
                Ok(on) => online.extend(on),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot refresh presence");
                    return Vec::new();
                }
            }
        }
        members
            .into_iter()
            .map(|(room, m)| {
                let mut on: Vec<UserId> = m.into_iter().filter(|u| online.contains(u)).collect();
                on.sort_unstable();
                (room, ServerFrame::Presence { room, online: on }.encode())
            })
            .collect()
    }

    /// Sends a user's connections the presence list of a room they just entered.
    pub(super) async fn send_presence_snapshot(&self, user: UserId, room: RoomId) -> ChatResult<()> {
        let frame = self.presence_frame(room).await?;
        self.publish(Topic::User(user), &frame).await
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_COALESCE, window_frames};

    #[test]
    fn a_window_sends_each_persons_latest_change_once() {
        assert!(window_frames(5, &[]).is_empty());
        let one = window_frames(5, &[(3, true)]);
        assert_eq!(one.len(), 1);
        assert_eq!(&one[0][..], br#"{"type":"presence_change","room":5,"user":3,"online":true}"#);
        let many = window_frames(5, &[(3, true), (4, true), (3, false), (7, false), (4, true)]);
        assert_eq!(many.len(), 1);
        assert_eq!(
            std::str::from_utf8(&many[0]).unwrap(),
            concat!(
                r#"[{"type":"presence_change","room":5,"user":3,"online":false},"#,
                r#"{"type":"presence_change","room":5,"user":4,"online":true},"#,
                r#"{"type":"presence_change","room":5,"user":7,"online":false}]"#
            )
        );
        // A window of many people: arrays of at most 256 objects, nobody lost.
        let crowd: Vec<(i64, bool)> = (0..600).map(|u| (u, true)).collect();
        let frames = window_frames(5, &crowd);
        let sizes: Vec<usize> = frames
            .iter()
            .map(|f| serde_json::from_slice::<serde_json::Value>(f).unwrap().as_array().map_or(1, Vec::len))
            .collect();
        assert_eq!(sizes, [MAX_COALESCE, MAX_COALESCE, 600 - 2 * MAX_COALESCE]);
    }
}
