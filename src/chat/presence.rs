//! Presence: a person is online while at least one of their connections is open, and
//! each room's other members hear when that changes. Live only: never stored, never
//! replayed; a connection gets the current list of each of its rooms when it starts.

use super::{Actor, Chat, ChatResult};
use crate::{
    domain::{RoomId, UserId},
    hub::Topic,
    ws::protocol::{RoomInfo, ServerFrame},
};

impl Chat {
    /// A connection of `actor` opened; `rooms` are the rooms it listens to.
    pub async fn connected(&self, actor: &Actor, rooms: &[RoomInfo]) -> ChatResult<()> {
        if self.bus.connected(actor.user.id).await? {
            for r in rooms {
                self.publish(
                    Topic::Room(r.id),
                    &ServerFrame::PresenceChange { room: r.id, user: actor.user.id, online: true },
                )
                .await?;
            }
        }
        Ok(())
    }

    /// A connection of `user` closed; `rooms` are the rooms it listened to at the end.
    pub async fn disconnected(&self, user: UserId, rooms: &[RoomId]) -> ChatResult<()> {
        if self.bus.disconnected(user).await? {
            for r in rooms {
                self.publish(Topic::Room(*r), &ServerFrame::PresenceChange { room: *r, user, online: false }).await?;
            }
        }
        Ok(())
    }

    /// The `presence` frame of a room: who among its members is online now.
    pub async fn presence_frame(&self, room: RoomId) -> ChatResult<ServerFrame> {
        let e = self.room_entry(room).await?;
        let ids: Vec<UserId> = e.members.iter().copied().collect();
        let mut online = self.bus.online(&ids).await?;
        online.sort_unstable();
        Ok(ServerFrame::Presence { room, online })
    }

    /// Sends a user's connections the presence list of a room they just entered.
    pub(super) async fn send_presence_snapshot(&self, user: UserId, room: RoomId) -> ChatResult<()> {
        let frame = self.presence_frame(room).await?;
        self.publish(Topic::User(user), &frame).await
    }
}
