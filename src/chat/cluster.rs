//! What this node learns from the others (several nodes sharing a database and a
//! Redis bus): caches to drop, settings to reload, users whose node died, and the
//! store's copy of events the bus failed to bring. The bus calls these through
//! [`NodeEvents`]; on a single node nothing calls them.

use async_trait::async_trait;
use bytes::Bytes;

use super::{Chat, messages::stored_frame};
use crate::{
    bus::{BusError, NodeEvents},
    config::RegistrationMode,
    domain::{RoomId, Seq, UserId},
    hub::Topic,
    ws::protocol::ServerFrame,
};

fn store_err(e: crate::store::StoreError) -> BusError {
    BusError::Unavailable(format!("store: {e}"))
}

#[async_trait]
impl NodeEvents for Chat {
    fn room_changed(&self, room: RoomId) {
        self.forget_room(room);
    }

    fn user_changed(&self, user: UserId) {
        self.forget_user_in_rooms(user);
    }

    async fn settings_changed(&self) {
        match self.store.get_setting(super::REGISTRATION_KEY).await {
            Ok(Some(s)) => {
                if let Some(mode) = RegistrationMode::parse(&s) {
                    *self.registration.write() = mode;
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot reload settings changed by another node"),
        }
    }

    fn reset_caches(&self) {
        self.forget_all_rooms();
    }

    async fn presence_changed(&self, users: Vec<UserId>, online: bool) {
        for user in users {
            let rooms = match self.store.user_rooms(user).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, user_id = user, "cannot announce a presence change");
                    continue;
                }
            };
            for r in rooms {
                let frame = ServerFrame::PresenceChange { room: r.room.id, user, online };
                if let Err(e) = self.publish(Topic::Room(r.room.id), &frame).await {
                    tracing::warn!(error = %e, "cannot announce a presence change");
                }
            }
        }
    }

    async fn presence_frames(&self, rooms: &[RoomId]) -> Vec<(RoomId, Bytes)> {
        Chat::presence_frames(self, rooms).await
    }

    async fn events_between(
        &self,
        room: RoomId,
        after: Seq,
        upto: Seq,
        limit: i64,
    ) -> Result<Vec<(Seq, Bytes)>, BusError> {
        let rows = self.store.since(room, after, limit).await.map_err(store_err)?;
        Ok(rows.into_iter().filter(|m| m.seq <= upto).map(|m| (m.seq, stored_frame(m).encode())).collect())
    }

    async fn last_seqs(&self, rooms: &[RoomId]) -> Result<Vec<(RoomId, Seq)>, BusError> {
        self.store.last_seqs(rooms).await.map_err(store_err)
    }
}
