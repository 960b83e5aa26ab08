//! The WebSocket wire format: every frame a client may send ([`ClientFrame`]) and every
//! frame the server sends ([`ServerFrame`]), as serde types shared by the server, the
//! load generator and the tests. Frames are JSON text; a server frame is one object,
//! or, when several are queued for a connection, one JSON array of objects (so a burst
//! costs one WebSocket frame and one write). docs/PROTOCOL.md documents each with
//! examples; this file and `http/*` are the only places that define what goes on the
//! wire.

use serde::{Deserialize, Serialize};

use crate::domain::{MessageKind, Retention, RoomId, RoomKind, Seq, UserId};

/// Longest request id a client may use.
pub const MAX_REQUEST_ID: usize = 64;
/// Most events one `history` reply carries.
pub const MAX_HISTORY: u32 = 100;
/// Most events one `resumed` reply carries; `more: true` says to ask again.
pub const MAX_RESUME: u32 = 500;

/// A command from the client. Each carries a request id `id` (a string the client
/// chooses) that the server's `ack`/`error`/reply names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Post a message. `client_id` makes retries safe: the same id is stored once.
    /// `reply_to` names the seq of the message this one answers.
    Send {
        id: String,
        room: RoomId,
        client_id: String,
        text: String,
        #[serde(default)]
        reply_to: Option<Seq>,
        /// Ids of the sender's pending uploads in this room (at most 10); `text` may
        /// then be empty (§3.9).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<String>,
    },
    /// Replace the text of your own message `seq`.
    Edit { id: String, room: RoomId, seq: Seq, text: String },
    /// Delete message `seq` (yours; a room owner or the admin: anyone's).
    Delete { id: String, room: RoomId, seq: Seq },
    /// Add (`on`, the default) or take back a reaction to message `seq`.
    React {
        id: String,
        room: RoomId,
        seq: Seq,
        emoji: String,
        #[serde(default = "yes")]
        on: bool,
    },
    /// Set your notification level for a room: `all`, `mentions` or `muted`.
    Notify { id: String, room: RoomId, level: String },
    /// Kept events before `before` (default: the newest), at most `limit` (≤ 100).
    History {
        id: String,
        room: RoomId,
        #[serde(default)]
        before: Option<Seq>,
        #[serde(default)]
        limit: Option<u32>,
    },
    /// Everything after `after`, in order; or a `gap` reply when that is no longer kept.
    Resume { id: String, room: RoomId, after: Seq },
    /// Join a public room (or a private one you were invited to).
    Join { id: String, room: RoomId },
    /// Leave a room.
    Leave { id: String, room: RoomId },
    /// "I am typing" in a room; live only.
    Typing {
        #[serde(default)]
        id: Option<String>,
        room: RoomId,
    },
    /// Everything up to `seq` has been read.
    Read {
        #[serde(default)]
        id: Option<String>,
        room: RoomId,
        seq: Seq,
    },
    /// Keep-alive; answered with `pong`.
    Ping { id: String },
}

impl ClientFrame {
    /// The request id, if the command has one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            ClientFrame::Send { id, .. }
            | ClientFrame::Edit { id, .. }
            | ClientFrame::Delete { id, .. }
            | ClientFrame::React { id, .. }
            | ClientFrame::Notify { id, .. }
            | ClientFrame::History { id, .. }
            | ClientFrame::Resume { id, .. }
            | ClientFrame::Join { id, .. }
            | ClientFrame::Leave { id, .. }
            | ClientFrame::Ping { id } => Some(id),
            ClientFrame::Typing { id, .. } | ClientFrame::Read { id, .. } => id.as_deref(),
        }
    }
}

fn yes() -> bool {
    true
}

/// A person as shown next to what they wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    pub id: UserId,
    pub username: String,
}

/// A person's public profile, as sent in `user_updated` (never the email).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub id: UserId,
    pub username: String,
    pub first_name: String,
    pub last_name: String,
}

/// One of the user's conversations, as listed in `hello` and `room_joined`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomInfo {
    pub id: RoomId,
    pub kind: RoomKind,
    /// Room name; for a DM, the other person's username.
    pub name: String,
    pub topic: String,
    pub private: bool,
    /// Your role here: `owner`, `moderator` or `member` (the site admin: `owner`).
    #[serde(default = "role_member")]
    pub role: String,
    /// Only the owner, moderators and the admin may send.
    #[serde(default)]
    pub read_only: bool,
    pub owner: Option<UserId>,
    pub retention: Retention,
    /// Sequence number of the room's newest event.
    pub last_seq: Seq,
    /// The user's read marker.
    pub read_seq: Seq,
    /// Events after the read marker written by others.
    pub unread: i64,
    /// For a DM: the other person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<Author>,
    /// Unread messages that mention you.
    #[serde(default)]
    pub mentions: i64,
    /// Your notification level: `all`, `mentions` or `muted`.
    #[serde(default = "notify_all")]
    pub notify: String,
    /// Archived by the admin: readable, but nobody may send (`room_archived`).
    #[serde(default)]
    pub archived: bool,
}

fn notify_all() -> String {
    "all".into()
}

fn role_member() -> String {
    "member".into()
}

/// The message a reply answers, as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyTo {
    pub seq: Seq,
    /// Absent when the original was deleted or is no longer kept (`missing: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<Author>,
    /// The start of the original's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excerpt: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub missing: bool,
}

/// A file attached to a message, or just uploaded (PROTOCOL §2.8, §3.9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// 32 hex characters.
    pub id: String,
    /// The cleaned file name.
    pub name: String,
    pub size: i64,
    /// What the server decided: a verified image's own type, a declared type on the
    /// safe list, or `application/octet-stream`.
    #[serde(rename = "type")]
    pub mime: String,
    /// Verified images only.
    pub image: Option<ImageSize>,
    /// Where to download it (`/api/files/ID/NAME`).
    pub url: String,
    /// Verified images only: a thumbnail, longest side at most 320 px.
    pub thumb_url: Option<String>,
}

/// An image's dimensions in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSize {
    pub width: i64,
    pub height: i64,
}

/// One reaction on a message: the emoji and who gave it, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaction {
    pub emoji: String,
    pub users: Vec<UserId>,
}

/// A room event: a message or a kept notice (also the entries of history/resume).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub room: RoomId,
    /// Absent for what is not kept (ephemeral rooms, the welcome notice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<Seq>,
    pub kind: EventKind,
    pub author: Author,
    pub text: String,
    /// Server time, Unix milliseconds.
    pub ts: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Actions (`edit`, `delete`, `reaction`): the seq of the message acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Seq>,
    /// `reaction`: the emoji, and whether it was added (`on`) or taken back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<bool>,
    /// Texts: when last edited (server time, ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited: Option<i64>,
    /// Texts: deleted (the text is empty).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// Texts: the files attached (§3.9), in the order sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// Texts: current reactions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<Reaction>,
    /// Texts: the message answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<ReplyTo>,
    /// Texts and edits: the people named with `<@ID>`, with their usernames.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<Author>,
    /// Moderation notices: `role`, `kick`, `ban`, `unban`, `mute`, `unmute`,
    /// `rename` or `read_only`; the fields below appear only where they apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Moderation: the person acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Author>,
    /// Moderation `role`: the new role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Moderation `mute`: muted until (server time, ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
    /// Moderation `rename`: the new name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Moderation `read_only`: the new setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

impl Event {
    /// A plain event: no action, reply, reactions or mentions.
    pub fn plain(room: RoomId, seq: Option<Seq>, kind: EventKind, author: Author, text: String, ts: i64) -> Self {
        Event {
            room,
            seq,
            kind,
            author,
            text,
            ts,
            client_id: None,
            attachments: Vec::new(),
            target: None,
            emoji: None,
            on: None,
            edited: None,
            deleted: false,
            reactions: Vec::new(),
            reply_to: None,
            mentions: Vec::new(),
            action: None,
            user: None,
            role: None,
            until: None,
            name: None,
            read_only: None,
        }
    }
}

/// What an [`Event`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Text,
    Joined,
    Left,
    Welcome,
    /// A new text for message `target`.
    Edit,
    /// Message `target` was deleted.
    Delete,
    /// A reaction on message `target` was added or taken back.
    Reaction,
    /// A moderation notice (`action` and its details).
    Moderation,
}

impl From<MessageKind> for EventKind {
    fn from(k: MessageKind) -> Self {
        match k {
            MessageKind::Text => EventKind::Text,
            MessageKind::Joined => EventKind::Joined,
            MessageKind::Left => EventKind::Left,
            MessageKind::Edit => EventKind::Edit,
            MessageKind::Delete => EventKind::Delete,
            MessageKind::React | MessageKind::Unreact => EventKind::Reaction,
            MessageKind::Moderation => EventKind::Moderation,
        }
    }
}

/// Limits the server enforces, told in `hello` so clients can check before sending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub max_message_chars: usize,
    pub max_frame_bytes: usize,
    pub messages_per_10s: u32,
}

/// A frame from the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// First frame on every connection.
    Hello {
        user: Author,
        rooms: Vec<RoomInfo>,
        limits: Limits,
        server_time: i64,
        /// The people you blocked (their DMs are refused; a client collapses their
        /// room messages).
        #[serde(default)]
        blocked: Vec<UserId>,
    },
    /// A command succeeded. For `send`: `room`, `seq` (absent in ephemeral rooms),
    /// `client_id` and whether it was a `duplicate` of an earlier send.
    Ack {
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<RoomId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<Seq>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        duplicate: bool,
    },
    /// A command failed (`id` names it when it could be read), or a protocol error.
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        code: String,
        message: String,
        /// `muted`: until when (server time, ms).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<i64>,
    },
    /// A person's message.
    Message(Event),
    /// A system notice: joined, left (kept, with seq) or welcome (only to the newcomer).
    Notice(Event),
    /// Reply to `history`: events oldest first; `more` says older ones are kept.
    History {
        id: String,
        room: RoomId,
        events: Vec<Event>,
        more: bool,
    },
    /// Reply to `resume`: the missed events in order; `more` says ask again after the
    /// last one.
    Resumed {
        id: String,
        room: RoomId,
        events: Vec<Event>,
        last_seq: Seq,
        more: bool,
    },
    /// Reply to `resume` when retention no longer reaches back to `after`: reload.
    Gap {
        id: String,
        room: RoomId,
        earliest_seq: Option<Seq>,
        last_seq: Seq,
    },
    /// Who in a room is online: the whole list when you subscribe.
    Presence {
        room: RoomId,
        online: Vec<UserId>,
    },
    /// One member came online or went offline.
    PresenceChange {
        room: RoomId,
        user: UserId,
        online: bool,
    },
    /// Someone is typing in a room.
    Typing {
        room: RoomId,
        user: Author,
    },
    /// A kept action on a message (edit, delete, reaction), in the room's seq order.
    Action(Event),
    /// Your notification level for a room changed (to all your connections).
    Notify {
        room: RoomId,
        level: String,
    },
    /// Your read marker moved (sent to all your connections, the sender's included).
    Read {
        room: RoomId,
        seq: Seq,
    },
    /// You are now in this room (you joined, were invited, or a DM was opened).
    RoomJoined {
        room: RoomInfo,
    },
    /// You are no longer in this room.
    RoomLeft {
        room: RoomId,
    },
    /// A room's topic or retention changed.
    RoomUpdated {
        room: RoomId,
        /// The room's name (after a rename).
        #[serde(default)]
        name: String,
        /// Only the owner, moderators and the admin may send.
        #[serde(default)]
        read_only: bool,
        /// Archived by the admin: nobody sends.
        #[serde(default)]
        archived: bool,
        topic: String,
        retention: Retention,
        owner: Option<UserId>,
    },
    /// You blocked (`blocked: true`) or unblocked someone, from any of your tabs (live
    /// only; `hello`'s `blocked` is the list at connection).
    BlockChanged {
        user: UserId,
        blocked: bool,
    },
    /// A person's name changed (live only): once to each room they are in (`room`
    /// set), and once to their own connections (no `room`).
    UserUpdated {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<RoomId>,
        user: Profile,
    },
    /// The server is about to close this connection, and why.
    Closing {
        code: String,
        reason: String,
    },
    Pong {
        id: String,
    },
}

impl ServerFrame {
    /// Encodes a frame as JSON. Serializing these types cannot fail (no maps with
    /// non-string keys, no custom serializers); an empty object is sent if it ever did.
    pub fn encode(&self) -> bytes::Bytes {
        match serde_json::to_vec(self) {
            Ok(v) => bytes::Bytes::from(v),
            Err(e) => {
                tracing::error!(error = %e, "encoding a server frame failed");
                bytes::Bytes::from_static(b"{}")
            }
        }
    }

    pub fn error(id: Option<&str>, code: &str, message: impl Into<String>) -> Self {
        ServerFrame::Error { id: id.map(str::to_string), code: code.to_string(), message: message.into(), until: None }
    }
}

/// Encodes several frames as one JSON array (one queued item, one WebSocket frame).
pub fn encode_batch(frames: &[ServerFrame]) -> bytes::Bytes {
    match serde_json::to_vec(frames) {
        Ok(v) => bytes::Bytes::from(v),
        Err(e) => {
            tracing::error!(error = %e, "encoding a batch of server frames failed");
            bytes::Bytes::from_static(b"[]")
        }
    }
}

/// Why a client frame could not be used: a stable code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub id: Option<String>,
    pub code: &'static str,
    pub message: String,
}

/// The command types a client may send, for the `unknown_command` message.
const COMMANDS: &[&str] =
    &["send", "edit", "delete", "react", "history", "resume", "join", "leave", "typing", "read", "notify", "ping"];

/// Decodes one client text frame, telling bad JSON, unknown commands and malformed
/// commands apart, and recovering the request id whenever the JSON has one.
pub fn decode_client(text: &str) -> Result<ClientFrame, DecodeError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| DecodeError {
        id: None,
        code: "bad_json",
        message: format!("the frame is not valid JSON: {e}"),
    })?;
    let id = value.get("id").and_then(|v| v.as_str()).map(|s| s.chars().take(MAX_REQUEST_ID).collect::<String>());
    let Some(kind) = value.get("type").and_then(|v| v.as_str()).map(str::to_string) else {
        return Err(DecodeError {
            id,
            code: "bad_request",
            message: "a command is a JSON object with a string \"type\"".into(),
        });
    };
    if !COMMANDS.contains(&kind.as_str()) {
        return Err(DecodeError {
            id,
            code: "unknown_command",
            message: format!(
                "unknown command {:?}; known: {}",
                kind.chars().take(32).collect::<String>(),
                COMMANDS.join(", ")
            ),
        });
    }
    let frame: ClientFrame = serde_json::from_value(value).map_err(|e| DecodeError {
        id: id.clone(),
        code: "bad_request",
        message: format!("malformed {kind} command: {e}"),
    })?;
    if let Some(rid) = frame.request_id()
        && (rid.is_empty() || rid.len() > MAX_REQUEST_ID)
    {
        return Err(DecodeError {
            id,
            code: "bad_request",
            message: format!("a request id is 1 to {MAX_REQUEST_ID} bytes"),
        });
    }
    Ok(frame)
}

/// Decodes a server text frame (one object or an array of them), for clients.
pub fn decode_server(text: &str) -> Result<Vec<ServerFrame>, serde_json::Error> {
    if text.trim_start().starts_with('[') {
        serde_json::from_str(text)
    } else {
        serde_json::from_str(text).map(|f| vec![f])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_commands() {
        let f = decode_client(r#"{"type":"send","id":"1","room":3,"client_id":"c","text":"hi"}"#).unwrap();
        assert_eq!(
            f,
            ClientFrame::Send {
                id: "1".into(),
                room: 3,
                client_id: "c".into(),
                text: "hi".into(),
                reply_to: None,
                attachments: vec![]
            }
        );
        let f = decode_client(r#"{"type":"history","id":"2","room":3}"#).unwrap();
        assert_eq!(f, ClientFrame::History { id: "2".into(), room: 3, before: None, limit: None });
    }

    #[test]
    fn tells_errors_apart() {
        assert_eq!(decode_client("{nope").unwrap_err().code, "bad_json");
        let e = decode_client(r#"{"type":"dance","id":"7"}"#).unwrap_err();
        assert_eq!((e.code, e.id.as_deref()), ("unknown_command", Some("7")));
        let e = decode_client(r#"{"type":"send","id":"8","room":"x"}"#).unwrap_err();
        assert_eq!((e.code, e.id.as_deref()), ("bad_request", Some("8")));
        assert_eq!(decode_client("[1,2]").unwrap_err().code, "bad_request");
        assert_eq!(decode_client(r#"{"type":"ping","id":""}"#).unwrap_err().code, "bad_request");
    }

    #[test]
    fn server_frames_round_trip_singly_and_batched() {
        let ev = Event {
            client_id: Some("c1".into()),
            ..Event::plain(1, Some(4), EventKind::Text, Author { id: 2, username: "ann".into() }, "hi".into(), 5)
        };
        let one = ServerFrame::Message(ev.clone()).encode();
        let s = std::str::from_utf8(&one).unwrap();
        assert!(s.contains(r#""type":"message""#), "{s}");
        assert_eq!(decode_server(s).unwrap(), vec![ServerFrame::Message(ev.clone())]);
        let batch = format!("[{s},{s}]");
        assert_eq!(decode_server(&batch).unwrap().len(), 2);
    }

    proptest::proptest! {
        /// Whatever bytes arrive, decoding answers (a frame or a coded error), never panics,
        /// and an error's request id is bounded.
        #[test]
        fn decode_never_panics(s in "\\PC{0,200}") {
            if let Err(e) = decode_client(&s) {
                proptest::prop_assert!(e.id.map_or(0, |i| i.chars().count()) <= MAX_REQUEST_ID);
            }
        }

        #[test]
        fn decode_json_shaped_input(ty in "(send|history|resume|join|leave|typing|read|ping|x)", id in "\\PC{0,80}", room in proptest::num::i64::ANY, text in "\\PC{0,50}") {
            let v = serde_json::json!({"type": ty, "id": id, "room": room, "client_id": "c", "text": text, "after": 1, "seq": 2});
            let _ = decode_client(&v.to_string());
        }
    }
}
