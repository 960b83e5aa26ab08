//! Sending, reading back and resuming: the delivery contract. Sends are validated,
//! rate-limited and authorized here, then handed to the pipeline (kept rooms) or
//! published directly (ephemeral rooms: nothing stored, no seq). History and resume
//! read only what the room's retention still keeps, and say "gap" plainly when a
//! resume reaches back further than that.

use tokio::sync::oneshot;

use super::{Actor, Chat, ChatError, ChatResult, now_ms, pipeline};
use crate::{
    domain::{self, MessageKind, RoomId, Seq},
    hub::Topic,
    store::{Appended, NewMessage, Room, StoreError, StoredMessage},
    ws::protocol::{Author, Event, MAX_HISTORY, MAX_RESUME, ServerFrame},
};

/// An accepted send: wait on it for the ack.
pub enum SendReceipt {
    /// Queued for the store; resolves to the seq (or the earlier one, for a duplicate).
    Pending(oneshot::Receiver<Result<Appended, StoreError>>),
    /// An ephemeral room: already delivered, nothing kept.
    Delivered,
    /// An ephemeral room: this client id was delivered moments ago; not again.
    AlreadyDelivered,
}

impl SendReceipt {
    /// Waits until the message is kept and published: `(seq, duplicate)`.
    pub async fn wait(self) -> ChatResult<(Option<Seq>, bool)> {
        match self {
            SendReceipt::Delivered => Ok((None, false)),
            SendReceipt::AlreadyDelivered => Ok((None, true)),
            SendReceipt::Pending(rx) => match rx.await {
                Ok(Ok(Appended::New(s))) => Ok((Some(s), false)),
                Ok(Ok(Appended::Duplicate(s))) => Ok((Some(s), true)),
                Ok(Err(e)) => Err(e.into()),
                Err(_) => Err(ChatError::Internal("message pipeline dropped a send".into())),
            },
        }
    }
}

/// Bytes one reply may carry (a frame is refused past 1 MiB).
const REPLY_BYTES: usize = 512 * 1024;
/// A generous estimate of an event's JSON besides its text.
const EVENT_OVERHEAD: usize = 200;

fn event_size(m: &StoredMessage) -> usize {
    m.body.len() + m.author_username.len() + m.client_id.as_ref().map_or(0, String::len) + EVENT_OVERHEAD
}

/// How many rows, taken in `rows`' order, fit in one reply (at least one if any).
fn fit<'a>(rows: impl ExactSizeIterator<Item = &'a StoredMessage>) -> usize {
    let n = rows.len();
    let mut total = 0;
    rows.take_while(|m| {
        total += event_size(m);
        total <= REPLY_BYTES
    })
    .count()
    .max(1)
    .min(n)
}

fn to_event(m: StoredMessage) -> Event {
    Event {
        room: m.room_id,
        seq: Some(m.seq),
        kind: m.kind.into(),
        author: Author { id: m.author_id, username: m.author_username },
        text: m.body,
        ts: m.created_at,
        client_id: m.client_id,
    }
}

/// The live frame of a kept event, as subscribers got (or should have got) it.
pub(super) fn stored_frame(m: StoredMessage) -> ServerFrame {
    let kind = m.kind;
    pipeline::kept_frame(kind, to_event(m))
}

impl Chat {
    /// Accepts a message for a room or DM. Returns as soon as it is queued, so one
    /// connection can have many sends in flight; the receipt resolves in order.
    pub async fn send(&self, actor: &Actor, room: RoomId, client_id: &str, text: &str) -> ChatResult<SendReceipt> {
        domain::validate_text(text, self.policy.max_message_chars)?;
        domain::validate_client_id(client_id)?;
        if self.send_limiter.check_key(&actor.user.id).is_err() {
            return Err(ChatError::RateLimited);
        }
        // Several nodes: the same budget, shared, so a client spreading its sockets
        // over nodes does not multiply it.
        let user = actor.user.id;
        self.take_shared_budget(|| format!("msg:{user}"), self.policy.messages_per_10s, 10_000).await?;
        let e = self.member_room(actor, room).await?;
        let msg = NewMessage {
            room_id: room,
            author_id: actor.user.id,
            kind: MessageKind::Text,
            body: text.to_string(),
            client_id: Some(client_id.to_string()),
            created_at: now_ms(),
        };
        self.keep_or_deliver(&e.room, msg, actor.author()).await
    }

    async fn keep_or_deliver(&self, room: &Room, msg: NewMessage, author: Author) -> ChatResult<SendReceipt> {
        if room.retention.ephemeral {
            if let Some(cid) = &msg.client_id
                && !self.ephemeral_seen.first_time(room.id, msg.author_id, cid)
            {
                return Ok(SendReceipt::AlreadyDelivered);
            }
            let frame = pipeline::event_frame(&msg, None, author);
            self.publish(Topic::Room(room.id), &frame).await?;
            return Ok(SendReceipt::Delivered);
        }
        Ok(SendReceipt::Pending(self.pipeline.submit(msg, author).await?))
    }

    /// Posts a system notice ("alice joined") as a kept room event.
    pub(super) async fn post_system(
        &self,
        actor: &Actor,
        room: &Room,
        kind: MessageKind,
        text: String,
    ) -> ChatResult<()> {
        let msg = NewMessage {
            room_id: room.id,
            author_id: actor.user.id,
            kind,
            body: text,
            client_id: None,
            created_at: now_ms(),
        };
        self.keep_or_deliver(room, msg, actor.author()).await?.wait().await?;
        Ok(())
    }

    /// Kept events before `before`, oldest first, at most `limit` (≤ 100); and whether
    /// older ones are kept.
    pub async fn history(
        &self,
        actor: &Actor,
        room: RoomId,
        before: Option<Seq>,
        limit: Option<u32>,
    ) -> ChatResult<(Vec<Event>, bool)> {
        self.check_reads(actor)?;
        self.member_room(actor, room).await?;
        let limit = i64::from(limit.unwrap_or(50).clamp(1, MAX_HISTORY));
        let mut rows = self.store.history(room, before, limit + 1).await?;
        let mut more = rows.len() as i64 > limit;
        if more {
            rows.remove(0);
        }
        // Keep the reply well under the 1 MiB frame limit: drop the oldest first.
        let keep = fit(rows.iter().rev());
        if keep < rows.len() {
            rows.drain(..rows.len() - keep);
            more = true;
        }
        Ok((rows.into_iter().map(to_event).collect(), more))
    }

    /// What the client missed after `after`: `Ok(Resume::Events)` in order, or
    /// `Ok(Resume::Gap)` when retention no longer reaches back that far.
    pub async fn resume(&self, actor: &Actor, room: RoomId, after: Seq) -> ChatResult<Resume> {
        let after = after.max(0);
        self.check_reads(actor)?;
        self.member_room(actor, room).await?;
        let current = self.store.room(room).await?.ok_or(ChatError::NotFound("room"))?;
        let last_seq = current.last_seq;
        if after >= last_seq {
            return Ok(Resume::Events { events: vec![], last_seq, more: false });
        }
        let earliest = self.store.earliest_seq(room).await?;
        // Events after+1 ..= last_seq are wanted; the store must still hold after+1.
        let complete = match earliest {
            Some(e) => e <= after + 1,
            None => false,
        };
        if !complete {
            return Ok(Resume::Gap { earliest_seq: earliest, last_seq });
        }
        let limit = i64::from(MAX_RESUME);
        let mut rows = self.store.since(room, after.max(0), limit + 1).await?;
        let mut more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        // Retention may leave holes (a DM trims each author's messages by the other
        // member's read marker): anything but after+1, after+2, … is a gap.
        if rows.iter().enumerate().any(|(k, m)| m.seq != after + 1 + k as i64) {
            return Ok(Resume::Gap { earliest_seq: earliest, last_seq });
        }
        let keep = fit(rows.iter());
        if keep < rows.len() {
            rows.truncate(keep);
            more = true;
        }
        Ok(Resume::Events { events: rows.into_iter().map(to_event).collect(), last_seq, more })
    }

    /// "I am typing": live to the room's members, never kept.
    pub async fn typing(&self, actor: &Actor, room: RoomId) -> ChatResult<()> {
        if self.typing_limiter.check_key(&actor.user.id).is_err() {
            return Ok(());
        }
        self.member_room(actor, room).await?;
        self.publish(Topic::Room(room), &ServerFrame::Typing { room, user: actor.author() }).await
    }

    /// Moves the actor's read marker forward and tells their other connections.
    pub async fn mark_read(&self, actor: &Actor, room: RoomId, seq: Seq) -> ChatResult<Seq> {
        self.member_room(actor, room).await?;
        let seq = self.store.mark_read(room, actor.user.id, seq).await?;
        self.publish(Topic::User(actor.user.id), &ServerFrame::Read { room, seq }).await?;
        Ok(seq)
    }
}

impl Chat {
    fn check_reads(&self, actor: &Actor) -> ChatResult<()> {
        self.read_limiter.check_key(&actor.user.id).map_err(|_| ChatError::RateLimited)
    }
}

/// The answer to a resume.
#[derive(Debug)]
pub enum Resume {
    Events { events: Vec<Event>, last_seq: Seq, more: bool },
    Gap { earliest_seq: Option<Seq>, last_seq: Seq },
}

/// Recently delivered client ids of ephemeral rooms, so a retried send (the ack was
/// lost) is not delivered twice. Nothing is stored, so this memory is the only record:
/// bounded, oldest forgotten first.
type DeliveredId = (RoomId, i64, String);

#[derive(Default)]
pub(super) struct RecentIds {
    inner: parking_lot::Mutex<(std::collections::HashSet<DeliveredId>, std::collections::VecDeque<DeliveredId>)>,
}

const RECENT_IDS: usize = 16_384;

impl RecentIds {
    /// True the first time this (room, author, client id) is seen.
    fn first_time(&self, room: RoomId, author: i64, cid: &str) -> bool {
        let key = (room, author, cid.to_string());
        let mut g = self.inner.lock();
        if g.0.contains(&key) {
            return false;
        }
        if g.1.len() >= RECENT_IDS
            && let Some(old) = g.1.pop_front()
        {
            g.0.remove(&old);
        }
        g.0.insert(key.clone());
        g.1.push_back(key);
        true
    }
}
