//! Sending, reading back and resuming: the delivery contract. Sends are validated,
//! rate-limited and authorized here, then handed to the pipeline (kept rooms) or
//! published directly (ephemeral rooms: nothing stored, no seq). History and resume
//! read only what the room's retention still keeps, and say "gap" plainly when a
//! resume reaches back further than that.

use tokio::sync::oneshot;

use super::{Actor, Chat, ChatError, ChatResult, now_ms, pipeline};
use crate::{
    domain::{
        self, MessageKind, RoomId, RoomKind, Seq, UserId,
        actions::{self, NotifyLevel},
    },
    hub::Topic,
    store::{Appended, NewMessage, ReplyRow, Room, StoreError, StoredMessage},
    ws::protocol::{Author, Event, EventKind, MAX_HISTORY, MAX_RESUME, Reaction, ReplyTo, ServerFrame},
};

/// An accepted send: wait on it for the ack.
pub enum SendReceipt {
    /// Queued for the store; resolves to the seq (or the earlier one, for a duplicate).
    Pending(oneshot::Receiver<Result<Appended, StoreError>>),
    /// An ephemeral room: already delivered, nothing kept.
    Delivered,
    /// An ephemeral room: this client id was delivered moments ago; not again.
    AlreadyDelivered,
    /// An action that asked for the state things are already in (a reaction given
    /// twice): nothing kept, nothing sent.
    Unchanged,
}

impl SendReceipt {
    /// Waits until the message is kept and published: `(seq, duplicate)`.
    pub async fn wait(self) -> ChatResult<(Option<Seq>, bool)> {
        match self {
            SendReceipt::Delivered => Ok((None, false)),
            SendReceipt::AlreadyDelivered | SendReceipt::Unchanged => Ok((None, true)),
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
    m.body.len()
        + m.author_username.len()
        + m.client_id.as_ref().map_or(0, String::len)
        + EVENT_OVERHEAD
        + m.attachments.iter().map(|f| 4 * f.name.len() + super::files::ATTACHMENT_OVERHEAD).sum::<usize>()
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

pub(super) fn to_event(m: StoredMessage) -> Event {
    let (emoji, on) = match m.kind {
        MessageKind::React => (Some(m.body.clone()), Some(true)),
        MessageKind::Unreact => (Some(m.body.clone()), Some(false)),
        _ => (None, None),
    };
    if m.kind == MessageKind::Moderation {
        let notice = super::moderation::Notice::parse(&m.body);
        let mut ev = Event::plain(
            m.room_id,
            Some(m.seq),
            EventKind::Moderation,
            Author { id: m.author_id, username: m.author_username },
            m.body,
            m.created_at,
        );
        if let Some(n) = notice {
            n.apply(&mut ev);
        }
        return ev;
    }
    let text = if matches!(m.kind, MessageKind::React | MessageKind::Unreact) { String::new() } else { m.body };
    Event {
        client_id: m.client_id,
        target: m.target,
        emoji,
        on,
        edited: m.edited_at,
        deleted: m.deleted,
        reactions: m.reactions.into_iter().map(|(emoji, users)| Reaction { emoji, users }).collect(),
        reply_to: m.reply_to.map(reply_view),
        mentions: m.mentions.into_iter().map(|(id, username)| Author { id, username }).collect(),
        attachments: m.attachments.iter().map(super::files::attachment_of).collect(),
        ..Event::plain(
            m.room_id,
            Some(m.seq),
            m.kind.into(),
            Author { id: m.author_id, username: m.author_username },
            text,
            m.created_at,
        )
    }
}

/// What a reply quotes, or that its original is gone.
fn reply_view(r: ReplyRow) -> ReplyTo {
    match r.original {
        Some((id, username, excerpt)) => {
            ReplyTo { seq: r.seq, author: Some(Author { id, username }), excerpt: Some(excerpt), missing: false }
        }
        None => ReplyTo { seq: r.seq, author: None, excerpt: None, missing: true },
    }
}

/// The live frame of a kept event, as subscribers got (or should have got) it.
pub(super) fn stored_frame(m: StoredMessage) -> ServerFrame {
    let kind = m.kind;
    pipeline::kept_frame(kind, to_event(m))
}

/// What an action on a message needs to know about its target.
struct Target {
    /// The room and its members (whom an edit's mentions may count for).
    entry: std::sync::Arc<super::rooms::RoomEntry>,
    message: StoredMessage,
}

impl Chat {
    /// Accepts a message for a room or DM. Returns as soon as it is queued, so one
    /// connection can have many sends in flight; the receipt resolves in order.
    /// `reply_to` names a kept message of the same room that this one answers.
    pub async fn send(
        &self,
        actor: &Actor,
        room: RoomId,
        client_id: &str,
        text: &str,
        reply_to: Option<Seq>,
    ) -> ChatResult<SendReceipt> {
        self.send_with_files(actor, room, client_id, text, reply_to, &[]).await
    }

    /// [`Chat::send`] with attachments: ids of the sender's pending uploads in this
    /// room (`chat::files`); the text may then be empty.
    pub async fn send_with_files(
        &self,
        actor: &Actor,
        room: RoomId,
        client_id: &str,
        text: &str,
        reply_to: Option<Seq>,
        attachments: &[String],
    ) -> ChatResult<SendReceipt> {
        if attachments.is_empty() || !text.trim().is_empty() {
            domain::validate_text(text, self.policy.max_message_chars)?;
        }
        domain::validate_client_id(client_id)?;
        self.take_send_budget(actor).await?;
        let e = self.member_room(actor, room).await?;
        let e = self.check_post_exact(actor, e).await?;
        let files = match self.files_for_send(actor, &e.room, client_id, attachments).await {
            // A retry of a message stored before and deleted since: its files went with
            // it, and the append answers the retry as the duplicate it is (§5.2).
            Err(ChatError::File(super::files::FileError::AttachmentNotFound))
                if self.store.client_id_used(room, actor.user.id, client_id).await? =>
            {
                Vec::new()
            }
            r => r?,
        };
        let quoted = match reply_to {
            Some(seq) => Some(self.live_text(&e.room, seq).await?),
            None => None,
        };
        let now = now_ms();
        let (mention_ids, mentions) = self.mentions_in(text, &e.members, actor.user.id).await?;
        let msg = NewMessage {
            client_id: Some(client_id.to_string()),
            reply_to,
            mentions: mention_ids,
            attachments: files.iter().map(|f| f.id.clone()).collect(),
            ..NewMessage::plain(room, actor.user.id, MessageKind::Text, text.to_string(), now)
        };
        let event = Event {
            client_id: msg.client_id.clone(),
            reply_to: quoted.map(|m| ReplyTo {
                seq: m.seq,
                author: Some(Author { id: m.author_id, username: m.author_username }),
                excerpt: Some(actions::excerpt(&m.body)),
                missing: false,
            }),
            mentions,
            attachments: files.iter().map(super::files::attachment_of).collect(),
            ..Event::plain(room, None, EventKind::Text, actor.author(), text.to_string(), now)
        };
        self.keep_or_deliver(&e.room, msg, event).await
    }

    /// The per-user message budget, on this node and (several nodes) shared, so a
    /// client spreading its sockets over nodes does not multiply it. Sends and
    /// message actions draw on the same budget.
    async fn take_send_budget(&self, actor: &Actor) -> ChatResult<()> {
        if self.send_limiter.check_key(&actor.user.id).is_err() {
            return Err(ChatError::RateLimited);
        }
        let user = actor.user.id;
        self.take_shared_budget(|| format!("msg:{user}"), self.policy.messages_per_10s, 10_000).await
    }

    /// A kept, undeleted text message of a room, or `message_not_found`.
    async fn live_text(&self, room: &Room, seq: Seq) -> ChatResult<StoredMessage> {
        if room.retention.ephemeral {
            return Err(ChatError::NotFound("message"));
        }
        match self.store.message(room.id, seq).await? {
            Some(m) if m.kind == MessageKind::Text && !m.deleted => Ok(m),
            _ => Err(ChatError::NotFound("message")),
        }
    }

    /// Whom a text mentions: the members to count a mention for (never the author),
    /// and every valid `<@ID>` with its username, for the live event.
    async fn mentions_in(
        &self,
        text: &str,
        members: &std::collections::HashSet<UserId>,
        author: UserId,
    ) -> ChatResult<(Vec<UserId>, Vec<Author>)> {
        let ids = actions::mentioned_ids(text);
        if ids.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let mut named = Vec::with_capacity(ids.len());
        for id in &ids {
            if let Some(u) = self.store.user_by_id(*id).await? {
                named.push(Author { id: u.id, username: u.username });
            }
        }
        let counted = ids.into_iter().filter(|id| *id != author && members.contains(id)).collect();
        Ok((counted, named))
    }

    /// The message an action targets, checked: kept, a text, not deleted, in a room
    /// the actor is a member of.
    async fn action_target(&self, actor: &Actor, room: RoomId, seq: Seq) -> ChatResult<Target> {
        self.take_send_budget(actor).await?;
        let e = self.member_room(actor, room).await?;
        let message = self.live_text(&e.room, seq).await?;
        Ok(Target { entry: e, message })
    }

    /// Replaces the text of the actor's own message. The edit is a kept event of its
    /// own (so resume replays it); the message keeps its seq and its place in
    /// retention.
    pub async fn edit(&self, actor: &Actor, room: RoomId, seq: Seq, text: &str) -> ChatResult<SendReceipt> {
        domain::validate_text(text, self.policy.max_message_chars)?;
        let t = self.action_target(actor, room, seq).await?;
        if t.message.author_id != actor.user.id {
            return Err(ChatError::Forbidden("only its author can edit a message"));
        }
        self.check_post_exact(actor, t.entry.clone()).await?;
        let (mention_ids, mentions) = self.mentions_in(text, &t.entry.members, actor.user.id).await?;
        let now = now_ms();
        let msg = NewMessage {
            target: Some(seq),
            mentions: mention_ids,
            ..NewMessage::plain(room, actor.user.id, MessageKind::Edit, text.to_string(), now)
        };
        let event = Event {
            target: Some(seq),
            mentions,
            ..Event::plain(room, None, EventKind::Edit, actor.author(), text.to_string(), now)
        };
        self.keep_or_deliver(&t.entry.room, msg, event).await
    }

    /// Deletes a message: its author may, and so may the room's owner, its moderators
    /// and the admin. The text leaves the store; a tombstone keeps the message's place.
    pub async fn delete(&self, actor: &Actor, room: RoomId, seq: Seq) -> ChatResult<SendReceipt> {
        let t = self.action_target(actor, room, seq).await?;
        let own = t.message.author_id == actor.user.id;
        // The site admin counts as a room's owner (`is_moderator`), but in a DM, which
        // has no owner, only the author deletes (docs/PROTOCOL.md §3.8).
        if !(own || Self::is_moderator(actor, &t.entry)) {
            return Err(ChatError::Forbidden(
                "only its author, the room's owner or moderators, or the admin can delete a message",
            ));
        }
        let now = now_ms();
        let msg = NewMessage {
            target: Some(seq),
            ..NewMessage::plain(room, actor.user.id, MessageKind::Delete, String::new(), now)
        };
        let event = Event {
            target: Some(seq),
            ..Event::plain(room, None, EventKind::Delete, actor.author(), String::new(), now)
        };
        if !own && actor.user.is_admin && !Self::is_moderator_by_role(actor, &t.entry) {
            // Someone else's message, deleted with the site admin's powers: audited.
            let detail = serde_json::json!({ "room": room, "seq": seq, "author": t.message.author_id });
            let name = t.entry.room.name.clone().unwrap_or_default();
            self.audit(Some(actor), "room.delete_message", name, detail).await?;
        }
        self.keep_or_deliver(&t.entry.room, msg, event).await
    }

    /// Adds (`on`) or takes back a reaction. Asking for the state a reaction is
    /// already in changes nothing: the receipt says duplicate and no event is kept.
    pub async fn react(&self, actor: &Actor, room: RoomId, seq: Seq, emoji: &str, on: bool) -> ChatResult<SendReceipt> {
        if on {
            actions::validate_new_reaction(emoji)?
        } else {
            actions::validate_emoji(emoji)?
        }
        let t = self.action_target(actor, room, seq).await?;
        self.check_post_exact(actor, t.entry.clone()).await?;
        let current = t.message.reactions.iter().find(|(e, _)| e == emoji);
        let mine = current.is_some_and(|(_, users)| users.contains(&actor.user.id));
        if mine == on {
            return Ok(SendReceipt::Unchanged);
        }
        if on && current.is_none() && t.message.reactions.len() >= actions::MAX_REACTIONS_PER_MESSAGE {
            return Err(ChatError::Invalid(domain::DomainError::new(
                "too_many_reactions",
                format!("a message carries at most {} different reactions", actions::MAX_REACTIONS_PER_MESSAGE),
            )));
        }
        let now = now_ms();
        let kind = if on { MessageKind::React } else { MessageKind::Unreact };
        let msg =
            NewMessage { target: Some(seq), ..NewMessage::plain(room, actor.user.id, kind, emoji.to_string(), now) };
        let event = Event {
            target: Some(seq),
            emoji: Some(emoji.to_string()),
            on: Some(on),
            ..Event::plain(room, None, EventKind::Reaction, actor.author(), String::new(), now)
        };
        self.keep_or_deliver(&t.entry.room, msg, event).await
    }

    /// Sets how much of a room the actor wants to be notified about, and tells all
    /// their connections.
    pub async fn set_notify(&self, actor: &Actor, room: RoomId, level: &str) -> ChatResult<NotifyLevel> {
        let level = NotifyLevel::parse(level)?;
        self.member_room(actor, room).await?;
        if !self.store.set_notify(room, actor.user.id, level.as_str()).await? {
            return Err(ChatError::NotMember);
        }
        let frame = ServerFrame::Notify { room, level: level.as_str().to_string() };
        self.publish(Topic::User(actor.user.id), &frame).await?;
        Ok(level)
    }

    pub(super) async fn keep_or_deliver(&self, room: &Room, msg: NewMessage, event: Event) -> ChatResult<SendReceipt> {
        // An archived room takes no one's words (texts and message actions); notices
        // still go in. `room` is the cached entry's copy: no query per message.
        if room.archived
            && matches!(
                msg.kind,
                MessageKind::Text | MessageKind::Edit | MessageKind::Delete | MessageKind::React | MessageKind::Unreact
            )
        {
            return Err(ChatError::RoomArchived);
        }
        if room.retention.ephemeral {
            if let Some(cid) = &msg.client_id
                && !self.ephemeral_seen.first_time(room.id, msg.author_id, cid)
            {
                return Ok(SendReceipt::AlreadyDelivered);
            }
            let frame = pipeline::event_frame(msg.kind, &event, None);
            self.publish(Topic::Room(room.id), &frame).await?;
            return Ok(SendReceipt::Delivered);
        }
        Ok(SendReceipt::Pending(self.pipeline.submit(msg, event).await?))
    }

    /// Posts a system notice ("alice joined") as a kept room event.
    pub(super) async fn post_system(
        &self,
        actor: &Actor,
        room: &Room,
        kind: MessageKind,
        text: String,
    ) -> ChatResult<Option<Seq>> {
        let now = now_ms();
        let event = Event::plain(room.id, None, kind.into(), actor.author(), text.clone(), now);
        let msg = NewMessage::plain(room.id, actor.user.id, kind, text, now);
        Ok(self.keep_or_deliver(room, msg, event).await?.wait().await?.0)
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
        // In a DM where either blocked the other nobody may send, so nobody is typing.
        if self.member_room(actor, room).await?.blocked {
            return Err(ChatError::Blocked);
        }
        self.publish(Topic::Room(room), &ServerFrame::Typing { room, user: actor.author() }).await
    }

    /// Moves the actor's read marker forward and tells their other connections.
    pub async fn mark_read(&self, actor: &Actor, room: RoomId, seq: Seq) -> ChatResult<Seq> {
        let dm = self.member_room(actor, room).await?.room.kind == RoomKind::Dm;
        let seq = self.store.mark_read(room, actor.user.id, seq, dm).await?;
        if dm {
            // A read in a DM deletes the messages it lets the retention take (the
            // store's `mark_read`): their files go too.
            self.files_changed();
        }
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
