//! Moderation (issue 15): who may do what to whom in a room, and what it leaves behind.
//! A room has one owner (`owner_id`), moderators and members; the site admin acts as
//! owner everywhere. Owners and moderators kick, ban, mute, rename, set read-only and
//! delete others' messages; only the owner (or admin) names moderators; nobody acts on
//! someone of their own rank or above. Each change is a kept `moderation` notice (own
//! seq, replayed by resume and history) and drops every node's cached copy of the room,
//! so the send path's checks ([`Chat::check_post`]: mute, read-only, DM blocks) read
//! only the room cache and stay exact across nodes. Also here: user blocks and the
//! default room that every new account joins.

use serde::{Deserialize, Serialize};

use super::{Actor, Chat, ChatError, ChatResult, now_ms, rooms::RoomEntry};
use crate::{
    domain::{DomainError, MessageKind, RoomId, RoomKind, RoomName, UserId},
    hub::Topic,
    store::{NameKind, NewMessage, Room, User},
    ws::protocol::{Author, Event, EventKind, ServerFrame},
};

/// The longest mute: 30 days, in minutes.
pub const MAX_MUTE_MINUTES: i64 = 43_200;
/// The settings key of the default room.
const DEFAULT_ROOM_KEY: &str = "default_room";

/// A rank in a room. Ordered: an actor may act only on lower ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Member,
    Moderator,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Moderator => "moderator",
            Role::Owner => "owner",
        }
    }
}

/// A role request (`PUT …/role`): only `moderator` and `member` may be given.
#[derive(Debug, Clone, Deserialize)]
pub struct RoleChange {
    pub role: String,
}

/// A ban (`POST …/bans`).
#[derive(Debug, Clone, Deserialize)]
pub struct BanRequest {
    pub user: UserId,
}

/// A mute (`POST …/mutes`): `minutes` 1..=43200.
#[derive(Debug, Clone, Deserialize)]
pub struct MuteRequest {
    pub user: UserId,
    pub minutes: i64,
}

/// A moderation notice as kept in a `moderation` event's body (JSON); its fields are
/// those of the live event (`ws::protocol::Event`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Notice {
    pub action: String,
    /// A readable line ("alice muted bob for 10 minutes") for clients that show text.
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Author>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

impl Notice {
    fn new(action: &str, text: String) -> Self {
        Notice { action: action.into(), text, ..Default::default() }
    }

    /// Fills an event's moderation fields (and its text) from the notice.
    pub(super) fn apply(self, ev: &mut Event) {
        ev.text = self.text;
        ev.action = Some(self.action);
        ev.user = self.user;
        ev.role = self.role;
        ev.until = self.until;
        ev.name = self.name;
        ev.read_only = self.read_only;
    }

    /// Reads a kept notice's body back (a body that is not one reads as plain text).
    pub(super) fn parse(body: &str) -> Option<Self> {
        serde_json::from_str(body).ok()
    }
}

impl RoomEntry {
    /// Someone's rank in this room: the owner (or the site admin), a moderator, or a
    /// member (also anyone not in the room).
    pub(super) fn role_of(&self, user: &User) -> Role {
        if self.room.kind == RoomKind::Dm {
            return Role::Member;
        }
        if user.is_admin || self.room.owner_id == Some(user.id) {
            Role::Owner
        } else if self.moderators.contains(&user.id) {
            Role::Moderator
        } else {
            Role::Member
        }
    }

    /// Until when `user` is muted here, if now.
    pub(super) fn muted_until(&self, user: UserId, now: i64) -> Option<i64> {
        self.mutes.get(&user).copied().filter(|u| *u > now)
    }
}

fn username(u: &User) -> Author {
    Author { id: u.id, username: u.username.clone() }
}

impl Chat {
    /// Whether the actor may post (send, edit, react) in a room, from the room cache
    /// alone: a blocked DM, a mute, a read-only room for a non-moderator.
    pub(super) fn check_post(actor: &Actor, e: &RoomEntry) -> ChatResult<()> {
        if e.room.kind == RoomKind::Dm {
            return if e.blocked { Err(ChatError::Blocked) } else { Ok(()) };
        }
        if !e.mutes.is_empty()
            && let Some(until) = e.muted_until(actor.user.id, now_ms())
        {
            return Err(ChatError::Muted(until));
        }
        if e.room.read_only && e.role_of(&actor.user) < Role::Moderator {
            return Err(ChatError::ReadOnly);
        }
        Ok(())
    }

    /// [`Chat::check_post`], with a refusal re-checked against the store when several
    /// nodes share it (another node may have lifted the mute or block a moment ago,
    /// before its word arrived here), as `member_room` does for memberships. The
    /// re-check reads only the fact that refused (one small query): a muted person
    /// sending again and again neither drops the room's cached entry nor reloads its
    /// member list. Only a refusal the store no longer holds drops the stale entry.
    pub(super) async fn check_post_exact(
        &self,
        actor: &Actor,
        e: std::sync::Arc<RoomEntry>,
    ) -> ChatResult<std::sync::Arc<RoomEntry>> {
        let refusal = match Self::check_post(actor, &e) {
            Ok(()) => return Ok(e),
            Err(err) if !self.bus.shared() => return Err(err),
            Err(err) => err,
        };
        let (room, me) = (e.room.id, actor.user.id);
        let holds = match &refusal {
            ChatError::Muted(_) => match self.store.muted_until(room, me).await? {
                Some(until) if until > now_ms() => Err(ChatError::Muted(until)),
                _ => Ok(()),
            },
            ChatError::ReadOnly => {
                let fresh = self.store.room(room).await?.ok_or(ChatError::NotFound("room"))?;
                let moderator = self.store.member_role(room, me).await?.as_deref() == Some("moderator");
                if fresh.read_only && !moderator && fresh.owner_id != Some(me) && !actor.user.is_admin {
                    Err(ChatError::ReadOnly)
                } else {
                    Ok(())
                }
            }
            ChatError::Blocked => {
                let other = e.members.iter().copied().find(|u| *u != me);
                match other {
                    Some(o) if self.store.blocked_either(me, o).await? => Err(ChatError::Blocked),
                    _ => Ok(()),
                }
            }
            _ => Err(refusal),
        };
        holds?;
        self.forget_room(room);
        let fresh = self.room_entry(room).await?;
        Self::check_post(actor, &fresh)?;
        Ok(fresh)
    }

    /// The actor's rank in a room they are in; moderation needs at least `least`.
    async fn moderator_room(&self, actor: &Actor, id: RoomId, least: Role) -> ChatResult<std::sync::Arc<RoomEntry>> {
        let e = self.member_room(actor, id).await?;
        if e.room.kind == RoomKind::Dm {
            return Err(ChatError::Forbidden("a direct conversation has no moderators"));
        }
        if e.role_of(&actor.user) < least {
            return Err(ChatError::Forbidden(match least {
                Role::Owner => "only the room's owner may do this",
                _ => "only the room's owner or a moderator may do this",
            }));
        }
        Ok(e)
    }

    /// The person a moderation action names, who must rank below the actor.
    async fn subject(&self, actor: &Actor, e: &RoomEntry, user: UserId) -> ChatResult<User> {
        let u = self.store.user_by_id(user).await?.ok_or(ChatError::NotFound("user"))?;
        if u.id == actor.user.id {
            return Err(ChatError::Forbidden("you cannot do this to yourself"));
        }
        if e.role_of(&u) >= e.role_of(&actor.user) {
            return Err(ChatError::Forbidden("nobody may act on someone of their own rank or above in the room"));
        }
        Ok(u)
    }

    /// Keeps a moderation notice in the room (through the pipeline, like every kept
    /// event) and delivers it live to its members.
    async fn post_notice(&self, actor: &Actor, room: &Room, n: Notice) -> ChatResult<()> {
        let now = now_ms();
        let body = serde_json::to_string(&n).map_err(|e| ChatError::Internal(e.to_string()))?;
        // The site admin acting in someone else's room uses admin powers: recorded in
        // the audit log like the console's actions (issue 15).
        if actor.user.is_admin && room.owner_id != Some(actor.user.id) {
            let detail = serde_json::json!({ "room": room.id, "user": n.user.as_ref().map(|u| u.id), "text": n.text });
            let name = room.name.clone().unwrap_or_default();
            self.audit(Some(actor), &format!("room.{}", n.action), name, detail).await?;
        }
        let mut event = Event::plain(room.id, None, EventKind::Moderation, actor.author(), String::new(), now);
        n.apply(&mut event);
        let msg = NewMessage::plain(room.id, actor.user.id, MessageKind::Moderation, body, now);
        self.keep_or_deliver(room, msg, event).await?.wait().await?;
        Ok(())
    }

    /// Ends a membership after a kick or ban: caches, the subject's sockets leave the
    /// room and get the room-removal frame.
    async fn removed(&self, room: RoomId, user: UserId) -> ChatResult<()> {
        self.room_changed(room).await?;
        self.tell_room_left(user, room).await
    }

    /// The owner (or admin) makes a member a moderator, or a moderator a member.
    pub async fn set_role(&self, actor: &Actor, id: RoomId, user: UserId, c: RoleChange) -> ChatResult<()> {
        let role = match c.role.as_str() {
            "moderator" => Role::Moderator,
            "member" => Role::Member,
            _ => {
                return Err(ChatError::Invalid(DomainError::new(
                    "invalid_role",
                    "a role is \"moderator\" or \"member\" (ownership cannot be given this way)",
                )));
            }
        };
        let e = self.moderator_room(actor, id, Role::Owner).await?;
        let u = self.subject(actor, &e, user).await?;
        if !e.members.contains(&u.id) {
            return Err(ChatError::SubjectNotMember);
        }
        if e.role_of(&u) == role {
            return Ok(());
        }
        if !self.store.set_role(id, u.id, role.as_str()).await? {
            return Err(ChatError::SubjectNotMember);
        }
        self.room_changed(id).await?;
        tracing::info!(room_id = id, user_id = u.id, by = actor.user.id, role = role.as_str(), "role changed");
        let text = format!("{} made {} a {}", actor.user.username, u.username, role.as_str());
        let n = Notice { user: Some(username(&u)), role: Some(role.as_str().into()), ..Notice::new("role", text) };
        self.post_notice(actor, &e.room, n).await
    }

    /// Removes a member (the owner, a moderator or the admin; never someone of the
    /// actor's rank or above).
    pub async fn kick(&self, actor: &Actor, id: RoomId, user: UserId) -> ChatResult<()> {
        let e = self.moderator_room(actor, id, Role::Moderator).await?;
        let u = self.subject(actor, &e, user).await?;
        if !e.members.contains(&u.id) {
            return Err(ChatError::SubjectNotMember);
        }
        // The notice first, so the subject's sockets see it before they leave.
        let text = format!("{} removed {}", actor.user.username, u.username);
        self.post_notice(actor, &e.room, Notice { user: Some(username(&u)), ..Notice::new("kick", text) }).await?;
        if self.store.remove_member(id, u.id).await? {
            tracing::info!(room_id = id, user_id = u.id, by = actor.user.id, "member kicked");
            self.removed(id, u.id).await?;
        }
        Ok(())
    }

    /// Bans someone (a member or not): they leave and cannot join or be added again.
    pub async fn ban(&self, actor: &Actor, id: RoomId, user: UserId) -> ChatResult<()> {
        let e = self.moderator_room(actor, id, Role::Moderator).await?;
        let u = self.subject(actor, &e, user).await?;
        if self.store.is_banned(id, u.id).await? {
            return Ok(());
        }
        let text = format!("{} banned {}", actor.user.username, u.username);
        self.post_notice(actor, &e.room, Notice { user: Some(username(&u)), ..Notice::new("ban", text) }).await?;
        let was_member = self.store.ban(id, u.id, actor.user.id, now_ms()).await?;
        tracing::info!(room_id = id, user_id = u.id, by = actor.user.id, "user banned");
        if was_member {
            self.removed(id, u.id).await?;
        }
        Ok(())
    }

    pub async fn unban(&self, actor: &Actor, id: RoomId, user: UserId) -> ChatResult<()> {
        let e = self.moderator_room(actor, id, Role::Moderator).await?;
        let u = self.store.user_by_id(user).await?.ok_or(ChatError::NotFound("user"))?;
        if self.store.unban(id, u.id).await? {
            tracing::info!(room_id = id, user_id = u.id, by = actor.user.id, "user unbanned");
            let text = format!("{} lifted the ban on {}", actor.user.username, u.username);
            self.post_notice(actor, &e.room, Notice { user: Some(username(&u)), ..Notice::new("unban", text) }).await?;
        }
        Ok(())
    }

    /// The people banned from a room (owner, moderators, admin).
    pub async fn bans(&self, actor: &Actor, id: RoomId) -> ChatResult<Vec<super::MemberView>> {
        self.moderator_room(actor, id, Role::Moderator).await?;
        let users = self.store.bans(id).await?;
        self.with_presence(users).await
    }

    /// Mutes someone in a room for `minutes` (1..=43200): they still read.
    pub async fn mute(&self, actor: &Actor, id: RoomId, m: MuteRequest) -> ChatResult<()> {
        if !(1..=MAX_MUTE_MINUTES).contains(&m.minutes) {
            return Err(ChatError::Invalid(DomainError::new(
                "invalid_duration",
                format!("a mute lasts 1 to {MAX_MUTE_MINUTES} minutes"),
            )));
        }
        let e = self.moderator_room(actor, id, Role::Moderator).await?;
        let u = self.subject(actor, &e, m.user).await?;
        let until = now_ms() + m.minutes * 60_000;
        self.store.mute(id, u.id, until).await?;
        self.room_changed(id).await?;
        tracing::info!(room_id = id, user_id = u.id, by = actor.user.id, minutes = m.minutes, "user muted");
        let text = format!("{} muted {} for {} minutes", actor.user.username, u.username, m.minutes);
        let n = Notice { user: Some(username(&u)), until: Some(until), ..Notice::new("mute", text) };
        self.post_notice(actor, &e.room, n).await
    }

    pub async fn unmute(&self, actor: &Actor, id: RoomId, user: UserId) -> ChatResult<()> {
        let e = self.moderator_room(actor, id, Role::Moderator).await?;
        let u = self.subject(actor, &e, user).await?;
        // A mute that has run out is no mute (sends pass, lists show none): lifting it
        // leaves no notice either.
        let in_force = self.store.muted_until(id, u.id).await?.is_some_and(|until| until > now_ms());
        if self.store.unmute(id, u.id).await? && in_force {
            self.room_changed(id).await?;
            tracing::info!(room_id = id, user_id = u.id, by = actor.user.id, "user unmuted");
            let text = format!("{} unmuted {}", actor.user.username, u.username);
            self.post_notice(actor, &e.room, Notice { user: Some(username(&u)), ..Notice::new("unmute", text) })
                .await?;
        }
        Ok(())
    }

    /// Renames a room and/or sets read-only (part of `PATCH /api/rooms/{id}`, which the
    /// caller has authorized); one notice per change. Returns the new name and setting.
    pub(super) async fn moderate_settings(
        &self,
        actor: &Actor,
        e: &RoomEntry,
        name: Option<&str>,
        read_only: Option<bool>,
    ) -> ChatResult<(String, bool)> {
        let id = e.room.id;
        let mut current = e.room.name.clone().unwrap_or_default();
        if let Some(n) = name {
            let name = RoomName::parse(n)?;
            if name.as_str() != current {
                let skeleton = self.check_look_alike(NameKind::RoomName, name.as_str(), Some(id)).await?;
                self.store.rename_room(id, name.as_str(), &name.folded()).await?;
                self.store.set_skeleton(NameKind::RoomName, id, &skeleton).await?;
                self.room_changed(id).await?;
                current = name.into_inner();
                let text = format!("{} renamed the room to {}", actor.user.username, current);
                self.post_notice(actor, &e.room, Notice { name: Some(current.clone()), ..Notice::new("rename", text) })
                    .await?;
            }
        }
        let mut ro = e.room.read_only;
        if let Some(r) = read_only
            && r != ro
        {
            self.store.set_read_only(id, r).await?;
            self.room_changed(id).await?;
            ro = r;
            let text = if r {
                format!("{} made the room read-only", actor.user.username)
            } else {
                format!("{} opened the room to everyone's messages", actor.user.username)
            };
            self.post_notice(actor, &e.room, Notice { read_only: Some(r), ..Notice::new("read_only", text) }).await?;
        }
        Ok((current, ro))
    }

    /// Whether the actor ranks as moderator or above in a room (for PATCH and delete).
    pub(super) fn is_moderator(actor: &Actor, e: &RoomEntry) -> bool {
        e.room.kind == RoomKind::Room && e.role_of(&actor.user) >= Role::Moderator
    }

    /// Owner or moderator by the room's own roles, not by being the site admin.
    pub(super) fn is_moderator_by_role(actor: &Actor, e: &RoomEntry) -> bool {
        e.room.kind == RoomKind::Room
            && (e.room.owner_id == Some(actor.user.id) || e.moderators.contains(&actor.user.id))
    }

    /// Refuses a join or an invitation of someone banned from the room.
    pub(super) async fn check_not_banned(&self, room: RoomId, user: UserId) -> ChatResult<()> {
        if self.store.is_banned(room, user).await? { Err(ChatError::Banned) } else { Ok(()) }
    }

    // Blocking.

    /// The people the actor blocked.
    pub async fn blocks(&self, actor: &Actor) -> ChatResult<Vec<super::MemberView>> {
        let users = self.store.blocks(actor.user.id).await?;
        self.with_presence(users).await
    }

    /// Ids of the people a user blocked (for `hello`).
    pub async fn blocked_ids(&self, user: UserId) -> ChatResult<Vec<UserId>> {
        Ok(self.store.blocked_ids(user).await?)
    }

    /// Blocks (`on`) or unblocks someone. A DM between them (if any) is re-read by
    /// every node, so its sends are refused (or allowed) at once. Asking for the state
    /// things are in already changes nothing and tells no tab.
    pub async fn set_block(&self, actor: &Actor, other: UserId, on: bool) -> ChatResult<()> {
        if other == actor.user.id {
            return Err(ChatError::Forbidden("you cannot block yourself"));
        }
        let u = self.store.user_by_id(other).await?.ok_or(ChatError::NotFound("user"))?;
        let changed = if on {
            self.store.block(actor.user.id, u.id, now_ms()).await?
        } else {
            self.store.unblock(actor.user.id, u.id).await?
        };
        if !changed {
            return Ok(());
        }
        if let Some(dm) = self.store.dm_between(actor.user.id, u.id).await? {
            self.room_changed(dm).await?;
        }
        // Every tab of the blocker, on every node, collapses or shows that person now.
        self.publish(Topic::User(actor.user.id), &ServerFrame::BlockChanged { user: u.id, blocked: on }).await?;
        Ok(())
    }

    /// Refuses opening a DM when either person blocked the other.
    pub(super) async fn check_not_blocked(&self, a: UserId, b: UserId) -> ChatResult<()> {
        if self.store.blocked_either(a, b).await? { Err(ChatError::Blocked) } else { Ok(()) }
    }

    // The default room.

    /// The room every new account joins, if set.
    pub async fn default_room(&self) -> ChatResult<Option<RoomId>> {
        Ok(self.store.get_setting(DEFAULT_ROOM_KEY).await?.and_then(|s| s.parse().ok()))
    }

    /// The default room as new accounts see it: `None` when the room set is gone or
    /// no longer public, since nobody would join it (`GET /api/config`).
    pub async fn default_room_in_effect(&self) -> ChatResult<Option<RoomId>> {
        let Some(id) = self.default_room().await? else { return Ok(None) };
        Ok(match self.room_entry(id).await {
            Ok(e) if e.room.kind == RoomKind::Room && !e.room.is_private => Some(id),
            Ok(_) | Err(ChatError::NotFound(_)) => None,
            Err(e) => return Err(e),
        })
    }

    /// Sets (or clears) the default room: the admin only, and only a public room.
    pub async fn set_default_room(&self, actor: &Actor, room: Option<RoomId>) -> ChatResult<()> {
        if !actor.user.is_admin {
            return Err(ChatError::Forbidden("only the admin may do this"));
        }
        let value = match room {
            Some(id) => {
                let r = self.store.room(id).await?.ok_or(ChatError::NotFound("room"))?;
                if r.kind != RoomKind::Room || r.is_private {
                    return Err(ChatError::Invalid(DomainError::new(
                        "not_public_room",
                        "the default room must be a public room",
                    )));
                }
                id.to_string()
            }
            None => String::new(),
        };
        self.store.set_setting(DEFAULT_ROOM_KEY, &value).await?;
        tracing::info!(room_id = ?room, by = actor.user.id, "default room set");
        self.audit(Some(actor), "settings.default_room", value, serde_json::json!({ "room": room })).await
    }

    /// Drops this node's cached copy of the default room. For accounts added by the
    /// CLI (`rtm user add`), whose process cannot reach a running node's cache: the
    /// node calls this when it reads the CLI's `user.add` audit entry.
    pub(super) async fn forget_default_room(&self) {
        if let Ok(Some(id)) = self.default_room().await {
            self.forget_room(id);
        }
    }

    /// A new account joins the default room (if one is set and still public). A
    /// failure is logged: the account exists either way.
    pub(super) async fn join_default_room(&self, user: &User) {
        let joined = async {
            let Some(id) = self.default_room().await? else {
                return Ok(());
            };
            match self.store.room(id).await? {
                Some(r) if r.kind == RoomKind::Room && !r.is_private => self.add_to_room(user, &r).await.map(|_| ()),
                _ => Ok(()),
            }
        };
        let r: ChatResult<()> = joined.await;
        if let Err(e) = r {
            tracing::warn!(error = %e, user_id = user.id, "cannot join the default room");
        }
    }
}
