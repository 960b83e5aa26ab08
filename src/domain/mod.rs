//! The vocabulary of RT Messenger: ids, validated names, rooms, messages and the
//! retention policy. Everything here is pure (no I/O, no clocks, no randomness), so the
//! rules can be unit- and property-tested in isolation and shared by `chat`, `store`
//! and the wire types.

pub mod actions;
pub mod files;
pub mod names;
pub mod retention;
pub mod search;

pub use names::{DomainError, Email, Password, PersonName, RoomName, Topic, Username, skeleton_key};
pub use retention::Retention;

use serde::{Deserialize, Serialize};

/// Database id of an account.
pub type UserId = i64;
/// Database id of a room or a DM conversation (both share the rooms table and the
/// per-room sequence numbers).
pub type RoomId = i64;
/// A per-room sequence number: grows by one for every kept event of that room.
pub type Seq = i64;

/// Whether a conversation is a named room or a two-person direct message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoomKind {
    Room,
    Dm,
}

impl RoomKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RoomKind::Room => "room",
            RoomKind::Dm => "dm",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "room" => Some(RoomKind::Room),
            "dm" => Some(RoomKind::Dm),
            _ => None,
        }
    }
}

/// What a kept room event is: a person's text, or a system notice about membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    Text,
    Joined,
    Left,
    /// A new text for the target message.
    Edit,
    /// The target message's text removed (a tombstone stays).
    Delete,
    /// The author added the reaction in the body to the target.
    React,
    /// The author took that reaction back.
    Unreact,
    /// A moderation notice (role change, kick, ban, mute, rename, …): the body holds
    /// its details as JSON (`chat::moderation::Notice`).
    Moderation,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Text => "text",
            MessageKind::Joined => "joined",
            MessageKind::Left => "left",
            MessageKind::Edit => "edit",
            MessageKind::Delete => "delete",
            MessageKind::React => "react",
            MessageKind::Unreact => "unreact",
            MessageKind::Moderation => "moderation",
        }
    }
    /// Whether this kind acts on another message (and so names a target seq).
    pub fn is_action(self) -> bool {
        matches!(self, MessageKind::Edit | MessageKind::Delete | MessageKind::React | MessageKind::Unreact)
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "text" => Some(MessageKind::Text),
            "joined" => Some(MessageKind::Joined),
            "left" => Some(MessageKind::Left),
            "edit" => Some(MessageKind::Edit),
            "delete" => Some(MessageKind::Delete),
            "react" => Some(MessageKind::React),
            "unreact" => Some(MessageKind::Unreact),
            "moderation" => Some(MessageKind::Moderation),
            _ => None,
        }
    }
}

/// Key that makes the DM between two people unique whatever the order they are named in.
pub fn dm_key(a: UserId, b: UserId) -> String {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    format!("{lo}:{hi}")
}

/// The address a per-address budget is kept for. An IPv6 user typically holds a whole
/// /64 (and can pick any address in it), so the /64 shares one budget; an IPv4-mapped
/// IPv6 address counts as the IPv4 address it is.
pub fn rate_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    use std::net::{IpAddr, Ipv6Addr};
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Validates a search text (user directory, room browser): at most 100 characters, no
/// control characters (NUL cannot even reach PostgreSQL, which refuses it in text).
pub fn validate_query(q: &str) -> Result<(), DomainError> {
    if q.chars().count() > 100 || q.chars().any(char::is_control) {
        return Err(DomainError::new(
            "invalid_query",
            "a search is at most 100 characters, with no control characters",
        ));
    }
    Ok(())
}

/// Whether a sign-in name could name an account at all: emails and usernames never
/// hold control characters, so such a login is simply unknown (and never reaches the
/// database, where PostgreSQL would refuse a NUL).
pub fn plausible_login(login: &str) -> bool {
    !login.chars().any(char::is_control) && login.len() <= 320
}

/// Validates a message text: not blank, at most `max_chars` characters (Unicode scalar
/// values, not bytes, so non-Latin scripts get the same allowance).
pub fn validate_text(text: &str, max_chars: usize) -> Result<(), DomainError> {
    if text.trim().is_empty() {
        return Err(DomainError::new("empty_text", "a message needs some text"));
    }
    // Control characters have no business in chat text; NUL cannot even be stored in
    // PostgreSQL, and each one costs six bytes once JSON-escaped.
    if text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r')) {
        return Err(DomainError::new("invalid_text", "a message cannot contain control characters"));
    }
    let n = text.chars().count();
    if n > max_chars {
        return Err(DomainError::new(
            "text_too_long",
            format!("a message is at most {max_chars} characters; this one has {n}"),
        ));
    }
    Ok(())
}

/// Validates a client-generated message id (used to make retried sends idempotent).
pub fn validate_client_id(id: &str) -> Result<(), DomainError> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(DomainError::new("invalid_client_id", "client_id must be 1 to 64 visible ASCII characters"));
    }
    Ok(())
}

#[cfg(test)]
mod rate_key_tests {
    use super::rate_key;

    #[test]
    fn an_ipv6_slash_64_shares_one_budget() {
        let k = |s: &str| rate_key(s.parse().expect("ip"));
        assert_eq!(k("2001:db8:1:2:aaaa::1"), k("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("::ffff:192.0.2.7"), k("192.0.2.7"));
        assert_ne!(k("192.0.2.7"), k("192.0.2.8"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dm_key_ignores_order() {
        assert_eq!(dm_key(7, 3), "3:7");
        assert_eq!(dm_key(3, 7), "3:7");
    }

    #[test]
    fn text_limits_count_characters() {
        assert!(validate_text("héllo", 5).is_ok());
        assert_eq!(validate_text("héllo!", 5).unwrap_err().code, "text_too_long");
        assert_eq!(validate_text("  \n", 5).unwrap_err().code, "empty_text");
        assert_eq!(validate_text("a\u{0}b", 5).unwrap_err().code, "invalid_text");
        assert_eq!(validate_text("a\u{1}b", 5).unwrap_err().code, "invalid_text");
        assert!(validate_text("line\r\nnext\tcol", 50).is_ok());
    }

    #[test]
    fn client_ids() {
        assert!(validate_client_id("abc-123").is_ok());
        assert!(validate_client_id("").is_err());
        assert!(validate_client_id("has space").is_err());
        assert!(validate_client_id(&"x".repeat(65)).is_err());
    }
}
