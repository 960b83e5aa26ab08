//! Rooms, memberships, DMs and the user directory: who may see, join, leave, invite and
//! change what. Private rooms are invisible to outsiders: every lookup by an outsider
//! answers `room_not_found`, exactly as for a room that does not exist.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::{Actor, Chat, ChatError, ChatResult, now_ms};
use crate::{
    domain::{MessageKind, Retention, RoomId, RoomKind, RoomName, Topic as RoomTopic, UserId},
    hub::{Control, Envelope, Topic},
    store::{NameKind, NewRoom, Room, RoomListing, RoomSummary, User},
    ws::protocol::{Author, Event, EventKind, Profile, RoomInfo, ServerFrame},
};

/// A room and its member ids, cached for the hot path (authorizing every send without a
/// query). Invalidated on every membership or settings change made through `Chat`.
pub(super) struct RoomEntry {
    pub room: Room,
    pub members: HashSet<UserId>,
    /// Members with the moderator role (the owner is `room.owner_id`).
    pub moderators: HashSet<UserId>,
    /// Members' mutes: until when (ms; past ones are harmless).
    pub mutes: HashMap<UserId, i64>,
    /// A DM whose two people blocked one another (either way): no sends.
    pub blocked: bool,
}

#[derive(Default)]
pub(super) struct RoomCache {
    map: RwLock<HashMap<RoomId, Arc<RoomEntry>>>,
    /// Bumped by every invalidation. A load that raced with one (read the members,
    /// then a removal invalidated) must not put its stale result back in the cache.
    generation: std::sync::atomic::AtomicU64,
}

/// The room-creation form.
#[derive(Debug, Clone, Deserialize)]
pub struct CreateRoom {
    pub name: String,
    #[serde(default)]
    pub topic: String,
    #[serde(default)]
    pub private: bool,
    #[serde(default)]
    pub retention: Option<Retention>,
}

/// A change of room settings (owner, moderators, admin); absent fields stay.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RoomUpdate {
    pub topic: Option<String>,
    pub retention: Option<Retention>,
    /// A new name (same rules as at creation).
    pub name: Option<String>,
    pub read_only: Option<bool>,
}

/// A person as listed in a room or the directory, with online status.
#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    pub id: UserId,
    pub username: String,
    pub first_name: String,
    pub last_name: String,
    pub online: bool,
    /// Members lists only: `owner`, `moderator` or `member`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// Members lists only: muted until (ms), or null.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub muted_until: Option<Option<i64>>,
}

fn room_info(room: &Room, read_seq: i64, unread: i64, peer: Option<&User>) -> RoomInfo {
    RoomInfo {
        id: room.id,
        kind: room.kind,
        name: match (room.kind, peer) {
            (RoomKind::Dm, Some(p)) => p.username.clone(),
            _ => room.name.clone().unwrap_or_default(),
        },
        topic: room.topic.clone(),
        private: room.is_private,
        role: "member".into(),
        read_only: room.read_only,
        owner: room.owner_id,
        retention: room.retention,
        last_seq: room.last_seq,
        read_seq,
        unread,
        peer: peer.map(|p| Author { id: p.id, username: p.username.clone() }),
        mentions: 0,
        notify: "all".into(),
        archived: room.archived,
    }
}

impl From<&RoomSummary> for RoomInfo {
    fn from(s: &RoomSummary) -> Self {
        RoomInfo {
            mentions: s.mentions,
            notify: s.notify.clone(),
            role: s.role.clone(),
            ..room_info(&s.room, s.last_read_seq, s.unread, s.peer.as_ref())
        }
    }
}

/// A membership as its member sees it: the owner (or the site admin) is `owner` in a
/// room, everyone is `member` in a DM, else the stored role.
fn summary_info(me: &User, s: &RoomSummary) -> RoomInfo {
    let mut info = RoomInfo::from(s);
    if s.room.kind == RoomKind::Room && (me.is_admin || s.room.owner_id == Some(me.id)) {
        info.role = "owner".into();
    } else if s.room.kind == RoomKind::Dm {
        info.role = "member".into();
    }
    info
}

impl Chat {
    /// The cached entry of a room, loaded on first use. With several nodes the cache
    /// is used only while this node hears the others' invalidations.
    pub(super) async fn room_entry(&self, id: RoomId) -> ChatResult<Arc<RoomEntry>> {
        let trusted = self.bus.caches_exact();
        if trusted && let Some(e) = self.rooms.map.read().get(&id) {
            crate::metrics::ROOM_CACHE_HITS.inc();
            return Ok(e.clone());
        }
        crate::metrics::ROOM_CACHE_MISSES.inc();
        let generation = self.rooms.generation.load(std::sync::atomic::Ordering::SeqCst);
        let room = self.store.room(id).await?.ok_or(ChatError::NotFound("room"))?;
        // Members with their roles and mutes in one query (the send path checks both).
        let roles = self.store.member_roles(id).await?;
        let members = roles.iter().map(|m| m.user).collect();
        let moderators = roles.iter().filter(|m| m.role == "moderator").map(|m| m.user).collect();
        let mutes = roles.iter().filter_map(|m| m.muted_until.map(|u| (m.user, u))).collect();
        let blocked = match room.kind {
            RoomKind::Dm => {
                let ids: Vec<UserId> = roles.iter().map(|m| m.user).collect();
                ids.len() == 2 && self.store.blocked_either(ids[0], ids[1]).await?
            }
            RoomKind::Room => false,
        };
        let entry = Arc::new(RoomEntry { room, members, moderators, mutes, blocked });
        let mut map = self.rooms.map.write();
        if trusted && self.rooms.generation.load(std::sync::atomic::Ordering::SeqCst) == generation {
            map.insert(id, entry.clone());
        }
        Ok(entry)
    }

    /// Drops this node's cached copy of a room.
    pub(super) fn forget_room(&self, id: RoomId) {
        let mut map = self.rooms.map.write();
        self.rooms.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        map.remove(&id);
    }

    /// A room's settings or members changed: every node drops its cached copy (this
    /// one at once, the others when the bus brings them the word).
    pub(super) async fn room_changed(&self, id: RoomId) -> ChatResult<()> {
        self.forget_room(id);
        self.bus.publish(Envelope::control(Topic::Nodes, Control::RoomChanged(id), None)).await?;
        Ok(())
    }

    /// A renamed user must not appear under the old name in cached rooms.
    pub(super) fn forget_user_in_rooms(&self, user: UserId) {
        let mut map = self.rooms.map.write();
        self.rooms.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        map.retain(|_, e| !e.members.contains(&user));
    }

    /// Drops every cached room (the bus may have missed invalidations).
    pub(super) fn forget_all_rooms(&self) {
        let mut map = self.rooms.map.write();
        self.rooms.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        map.clear();
    }

    /// The room if the actor is a member; outsiders learn nothing about private rooms.
    pub(super) async fn member_room(&self, actor: &Actor, id: RoomId) -> ChatResult<Arc<RoomEntry>> {
        let mut e = self.room_entry(id).await?;
        if !e.members.contains(&actor.user.id) && self.bus.shared() {
            // Another node may have added them a moment ago, before its word arrived
            // here: a refusal is checked against the store first. (One node's cache is
            // exact: no second look there.)
            self.forget_room(id);
            e = self.room_entry(id).await?;
        }
        if e.members.contains(&actor.user.id) {
            Ok(e)
        } else if e.room.is_private {
            Err(ChatError::NotFound("room"))
        } else {
            Err(ChatError::NotMember)
        }
    }

    /// The actor's rooms and DMs, with read markers and unread counts.
    pub async fn user_rooms(&self, actor: &Actor) -> ChatResult<Vec<RoomInfo>> {
        let me = &actor.user;
        Ok(self.store.user_rooms(me.id).await?.iter().map(|s| summary_info(me, s)).collect())
    }

    /// One of `user`'s rooms as their `hello` would show it (read marker, unread and
    /// mention counts, notification level, role), or `fallback` if they are not in it.
    async fn member_view(&self, user: &User, room: RoomId, fallback: RoomInfo) -> ChatResult<RoomInfo> {
        Ok(match self.store.user_room(user.id, room).await? {
            Some(s) => summary_info(user, &s),
            None => fallback,
        })
    }

    pub async fn create_room(&self, actor: &Actor, c: CreateRoom) -> ChatResult<RoomInfo> {
        self.check_social(actor)?;
        let name = RoomName::parse(&c.name)?;
        let topic = RoomTopic::parse(&c.topic)?;
        let retention =
            c.retention.unwrap_or(Retention::last_messages(self.policy.default_keep_messages)).validate()?;
        let skeleton = self.check_look_alike(NameKind::RoomName, name.as_str(), None).await?;
        let room = self
            .store
            .create_room(NewRoom {
                name_lc: name.folded(),
                name: name.into_inner(),
                topic: topic.into_inner(),
                is_private: c.private,
                owner_id: actor.user.id,
                retention,
                now: now_ms(),
            })
            .await?;
        tracing::info!(room_id = room.id, user_id = actor.user.id, private = room.is_private, "room created");
        self.store.set_skeleton(NameKind::RoomName, room.id, &skeleton).await?;
        let info = RoomInfo { role: "owner".into(), ..room_info(&room, 0, 0, None) };
        self.subscribe_user(actor.user.id, &info).await?;
        self.welcome(actor, &room).await?;
        Ok(info)
    }

    /// Browse and search: public rooms, plus private rooms the actor is in.
    pub async fn search_rooms(&self, actor: &Actor, q: Option<&str>) -> ChatResult<Vec<RoomListing>> {
        if let Some(q) = q {
            crate::domain::validate_query(q)?;
        }
        Ok(self.store.search_rooms(actor.user.id, q, 100).await?)
    }

    /// A room's settings, for members (and anyone, for public rooms).
    pub async fn room_details(&self, actor: &Actor, id: RoomId) -> ChatResult<RoomInfo> {
        let e = self.room_entry(id).await?;
        if e.room.is_private && !e.members.contains(&actor.user.id) {
            return Err(ChatError::NotFound("room"));
        }
        let peer = match e.room.kind {
            RoomKind::Dm => {
                let other = e.members.iter().copied().find(|u| *u != actor.user.id);
                match other {
                    Some(o) => self.store.user_by_id(o).await?,
                    None => None,
                }
            }
            RoomKind::Room => None,
        };
        let room = self.store.room(id).await?.ok_or(ChatError::NotFound("room"))?;
        // A visitor of a public room has read nothing; a member sees their own marker,
        // unread and mention counts and notification level, as in `hello`.
        let visitor =
            RoomInfo { role: e.role_of(&actor.user).as_str().into(), ..room_info(&room, 0, 0, peer.as_ref()) };
        if e.members.contains(&actor.user.id) { self.member_view(&actor.user, id, visitor).await } else { Ok(visitor) }
    }

    /// Joins a public room (private rooms are joined by the owner's invitation).
    pub async fn join(&self, actor: &Actor, id: RoomId) -> ChatResult<RoomInfo> {
        let e = self.room_entry(id).await?;
        if e.room.kind == RoomKind::Dm || (e.room.is_private && !e.members.contains(&actor.user.id)) {
            return Err(ChatError::NotFound("room"));
        }
        self.check_not_banned(id, actor.user.id).await?;
        self.add_to_room(&actor.user, &e.room).await
    }

    /// Adds a member: subscribes their connections, posts "joined", greets first-timers.
    pub(super) async fn add_to_room(&self, user: &User, room: &Room) -> ChatResult<RoomInfo> {
        let (added, first) = self.store.add_member(room.id, user.id, now_ms()).await?;
        self.room_changed(room.id).await?;
        let fresh = self.store.room(room.id).await?.ok_or(ChatError::NotFound("room"))?;
        let mut info = room_info(&fresh, fresh.last_seq, 0, None);
        if user.is_admin || fresh.owner_id == Some(user.id) {
            info.role = "owner".into();
        }
        // Already a member: their own marker, counts and role, not a newcomer's.
        let mut info = if added { info } else { self.member_view(user, room.id, info).await? };
        if added {
            let actor = Actor { user: user.clone(), session: None, token_id: None };
            self.subscribe_user(user.id, &info).await?;
            // The notice is the room's newest kept event now (its author's own: it
            // does not count as unread, so `read_seq` stays where joining put it).
            let notice = format!("{} joined", user.username);
            if let Some(seq) = self.post_system(&actor, &fresh, MessageKind::Joined, notice).await? {
                info.last_seq = info.last_seq.max(seq);
            }
            if first {
                self.welcome(&actor, &fresh).await?;
            }
            if !self.bus.online(&[user.id]).await?.is_empty() {
                self.publish(
                    Topic::Room(room.id),
                    &ServerFrame::PresenceChange { room: room.id, user: user.id, online: true },
                )
                .await?;
            }
            self.send_presence_snapshot(user.id, room.id).await?;
        }
        Ok(info)
    }

    pub async fn leave(&self, actor: &Actor, id: RoomId) -> ChatResult<()> {
        let e = self.member_room(actor, id).await?;
        if e.room.kind == RoomKind::Dm {
            return Err(ChatError::Forbidden("a direct conversation cannot be left"));
        }
        // An owner who leaves hands the room to another member (the oldest account
        // among them: the lowest user id), so a private room never ends up with
        // nobody able to invite.
        if e.room.owner_id == Some(actor.user.id)
            && let Some(heir) =
                self.store.members(id).await?.into_iter().filter(|u| u.id != actor.user.id).min_by_key(|u| u.id)
        {
            self.store.set_owner(id, heir.id).await?;
            self.room_changed(id).await?;
            let frame = ServerFrame::RoomUpdated {
                room: id,
                name: e.room.name.clone().unwrap_or_default(),
                read_only: e.room.read_only,
                archived: e.room.archived,
                topic: e.room.topic.clone(),
                retention: e.room.retention,
                owner: Some(heir.id),
            };
            self.publish(Topic::Room(id), &frame).await?;
        }
        self.remove_from_room(&actor.user, &e.room).await
    }

    async fn remove_from_room(&self, user: &User, room: &Room) -> ChatResult<()> {
        if !self.store.remove_member(room.id, user.id).await? {
            return Err(ChatError::NotMember);
        }
        self.room_changed(room.id).await?;
        let actor = Actor { user: user.clone(), session: None, token_id: None };
        self.post_system(&actor, room, MessageKind::Left, format!("{} left", user.username)).await?;
        self.tell_room_left(user.id, room.id).await
    }

    /// The user's connections on every node stop receiving the room and are told
    /// `room_left` (leave, kick, ban, room deletion).
    pub(super) async fn tell_room_left(&self, user: UserId, room: RoomId) -> ChatResult<()> {
        self.bus
            .publish(Envelope::control(
                Topic::User(user),
                Control::Unsubscribe(room),
                Some(ServerFrame::RoomLeft { room }.encode()),
            ))
            .await?;
        Ok(())
    }

    /// Subscribes every connection of `user` to a room and tells them about it.
    async fn subscribe_user(&self, user: UserId, info: &RoomInfo) -> ChatResult<()> {
        self.bus
            .publish(Envelope::control(
                Topic::User(user),
                Control::Subscribe(info.id, info.last_seq),
                Some(ServerFrame::RoomJoined { room: info.clone() }.encode()),
            ))
            .await?;
        Ok(())
    }

    /// The welcome notice, seen only by the newcomer (not kept).
    async fn welcome(&self, actor: &Actor, room: &Room) -> ChatResult<()> {
        let text = format!(
            "Welcome to {}, {}!{}",
            room.name.as_deref().unwrap_or("the room"),
            actor.user.first_name,
            if room.topic.is_empty() { String::new() } else { format!(" Topic: {}", room.topic) }
        );
        let frame =
            ServerFrame::Notice(Event::plain(room.id, None, EventKind::Welcome, actor.author(), text, now_ms()));
        self.publish(Topic::User(actor.user.id), &frame).await
    }

    pub async fn members(&self, actor: &Actor, id: RoomId) -> ChatResult<Vec<MemberView>> {
        let e = self.room_entry(id).await?;
        if !e.members.contains(&actor.user.id) && e.room.is_private {
            return Err(ChatError::NotFound("room"));
        }
        let users = self.store.members(id).await?;
        // The rank the server acts on (`role_of`: the site admin ranks as owner), so a
        // client never offers an action on someone the server would refuse it for.
        let ranks: std::collections::HashMap<UserId, &'static str> =
            users.iter().map(|u| (u.id, e.role_of(u).as_str())).collect();
        let mut list = self.with_presence(users).await?;
        let now = now_ms();
        let moderated = e.room.kind == RoomKind::Room;
        for m in &mut list {
            m.role = Some(ranks.get(&m.id).copied().unwrap_or("member"));
            m.muted_until = Some(if moderated { e.muted_until(m.id, now) } else { None });
        }
        Ok(list)
    }

    pub(super) async fn with_presence(&self, users: Vec<User>) -> ChatResult<Vec<MemberView>> {
        let ids: Vec<UserId> = users.iter().map(|u| u.id).collect();
        let online: HashSet<UserId> = self.bus.online(&ids).await?.into_iter().collect();
        Ok(users
            .into_iter()
            .filter(|u| !u.disabled)
            .map(|u| MemberView {
                online: online.contains(&u.id),
                id: u.id,
                username: u.username,
                first_name: u.first_name,
                last_name: u.last_name,
                role: None,
                muted_until: None,
            })
            .collect())
    }

    fn require_owner(actor: &Actor, e: &RoomEntry) -> ChatResult<()> {
        if e.room.kind == RoomKind::Room && (e.room.owner_id == Some(actor.user.id) || actor.user.is_admin) {
            Ok(())
        } else {
            Err(ChatError::Forbidden("only the room's owner may do this"))
        }
    }

    /// The owner adds someone to a room (how people get into private rooms).
    pub async fn invite(&self, actor: &Actor, id: RoomId, username: &str) -> ChatResult<()> {
        self.check_social(actor)?;
        let e = self.member_room(actor, id).await?;
        Self::require_owner(actor, &e)?;
        let user = self.find_user(username).await?;
        if e.members.contains(&user.id) {
            return Ok(());
        }
        self.check_not_banned(id, user.id).await?;
        self.add_to_room(&user, &e.room).await.map(|_| ())
    }

    /// The owner, a moderator or the admin removes (kicks) a member (`moderation.rs`).
    pub async fn remove_member(&self, actor: &Actor, id: RoomId, user: UserId) -> ChatResult<()> {
        self.kick(actor, id, user).await
    }

    /// The owner, a moderator or the admin changes the topic, the retention (applied
    /// at once), the name or read-only (those two leave a moderation notice).
    pub async fn update_room(&self, actor: &Actor, id: RoomId, u: RoomUpdate) -> ChatResult<RoomInfo> {
        let e = self.member_room(actor, id).await?;
        if !Self::is_moderator(actor, &e) {
            return Err(ChatError::Forbidden("only the room's owner or a moderator may do this"));
        }
        let topic = match u.topic {
            Some(t) => RoomTopic::parse(&t)?.into_inner(),
            None => e.room.topic.clone(),
        };
        let retention = match u.retention {
            Some(r) => r.validate()?,
            None => e.room.retention,
        };
        if topic != e.room.topic || retention != e.room.retention {
            self.store.update_room(id, &topic, retention).await?;
            // A tighter policy may have dropped messages with files (`files.rs`).
            self.files_changed();
            self.room_changed(id).await?;
        }
        let (name, read_only) = self.moderate_settings(actor, &e, u.name.as_deref(), u.read_only).await?;
        self.publish(
            Topic::Room(id),
            &ServerFrame::RoomUpdated {
                room: id,
                name,
                read_only,
                archived: e.room.archived,
                topic: topic.clone(),
                retention,
                owner: e.room.owner_id,
            },
        )
        .await?;
        self.room_details(actor, id).await
    }

    /// Opens (or finds) the DM between the actor and another person; both people's
    /// connections subscribe to it.
    pub async fn open_dm(&self, actor: &Actor, other: UserId) -> ChatResult<RoomInfo> {
        self.check_social(actor)?;
        if other == actor.user.id {
            return Err(ChatError::Forbidden("a direct message needs someone else"));
        }
        let peer = self.store.user_by_id(other).await?.filter(|u| !u.disabled).ok_or(ChatError::NotFound("user"))?;
        self.check_not_blocked(actor.user.id, other).await?;
        let retention = Retention::last_messages(self.policy.default_keep_messages);
        let room = self.store.dm_room(actor.user.id, other, retention, now_ms()).await?;
        // Found again, a DM keeps each side's read marker and counts.
        let mine = self.member_view(&actor.user, room.id, room_info(&room, 0, 0, Some(&peer))).await?;
        let theirs = self.member_view(&peer, room.id, room_info(&room, 0, 0, Some(&actor.user))).await?;
        self.subscribe_user(actor.user.id, &mine).await?;
        self.subscribe_user(other, &theirs).await?;
        self.send_presence_snapshot(actor.user.id, room.id).await?;
        self.send_presence_snapshot(other, room.id).await?;
        Ok(mine)
    }

    /// Tells everyone who sees a person that their name changed: one `user_updated`
    /// to each room and DM they are in (members' lists and the names on messages
    /// follow at once), and one to their own connections (their other tabs, even in
    /// no room). Live only: a client that was away reads the names afresh.
    pub(super) async fn announce_profile(&self, user: &User) -> ChatResult<()> {
        let profile = Profile {
            id: user.id,
            username: user.username.clone(),
            first_name: user.first_name.clone(),
            last_name: user.last_name.clone(),
        };
        let rooms = self.store.user_rooms(user.id).await?;
        let mut envs = Vec::with_capacity(rooms.len() + 1);
        for r in &rooms {
            let frame = ServerFrame::UserUpdated { room: Some(r.room.id), user: profile.clone() };
            envs.push(Envelope::frame(Topic::Room(r.room.id), frame.encode()));
        }
        envs.push(Envelope::frame(
            Topic::User(user.id),
            ServerFrame::UserUpdated { room: None, user: profile }.encode(),
        ));
        self.bus.publish_batch(envs).await?;
        Ok(())
    }

    /// The user directory with online status.
    pub async fn directory(&self, q: Option<&str>) -> ChatResult<Vec<MemberView>> {
        if let Some(q) = q {
            crate::domain::validate_query(q)?;
        }
        let users = self.store.list_users(q, 50, true).await?;
        self.with_presence(users).await
    }
}
