//! A room's retention policy: how much history the server keeps. Pure rules; the store
//! applies them (deleting rows) and the chat layer uses them to answer "gap" on resume.

use serde::{Deserialize, Serialize};

use super::{DomainError, Seq};

/// How much of a room's history is kept. `keep_messages` and `keep_days` may both be
/// set (a message is kept while it satisfies both); `ephemeral` keeps nothing at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Keep at most this many most recent events.
    pub keep_messages: Option<i64>,
    /// Keep events for at most this many days.
    pub keep_days: Option<i64>,
    /// Store nothing: members see only what is sent while they are connected.
    #[serde(default)]
    pub ephemeral: bool,
}

pub const MAX_KEEP_MESSAGES: i64 = 1_000_000;
pub const MAX_KEEP_DAYS: i64 = 36_500;

impl Retention {
    pub fn last_messages(n: i64) -> Self {
        Retention { keep_messages: Some(n), keep_days: None, ephemeral: false }
    }

    pub fn ephemeral() -> Self {
        Retention { keep_messages: None, keep_days: None, ephemeral: true }
    }

    /// Checks the numbers; an ephemeral policy must not also carry limits.
    pub fn validate(self) -> Result<Self, DomainError> {
        let bad = |m: &str| Err(DomainError::new("invalid_retention", m.to_string()));
        if self.ephemeral && (self.keep_messages.is_some() || self.keep_days.is_some()) {
            return bad("an ephemeral room keeps nothing: give no message or day limit");
        }
        if let Some(n) = self.keep_messages
            && !(1..=MAX_KEEP_MESSAGES).contains(&n)
        {
            return bad("keep_messages must be between 1 and 1000000");
        }
        if let Some(d) = self.keep_days
            && !(1..=MAX_KEEP_DAYS).contains(&d)
        {
            return bad("keep_days must be between 1 and 36500");
        }
        if !self.ephemeral && self.keep_messages.is_none() && self.keep_days.is_none() {
            return bad("choose keep_messages, keep_days, both, or ephemeral");
        }
        Ok(self)
    }

    /// The highest sequence number that falls outside "keep the last N" once the room's
    /// last event is `last_seq` (everything `<=` it may be deleted), if any.
    pub fn count_cutoff(self, last_seq: Seq) -> Option<Seq> {
        let n = self.keep_messages?;
        let cut = last_seq - n;
        (cut > 0).then_some(cut)
    }

    /// Events created before this time (Unix ms) fall outside "keep N days".
    pub fn age_cutoff_ms(self, now_ms: i64) -> Option<i64> {
        self.keep_days.map(|d| now_ms - d * 86_400_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(Retention::last_messages(10).validate().is_ok());
        assert!(Retention::ephemeral().validate().is_ok());
        assert!(Retention::last_messages(0).validate().is_err());
        let both = Retention { keep_messages: Some(5), keep_days: Some(2), ephemeral: false };
        assert!(both.validate().is_ok());
        let none = Retention { keep_messages: None, keep_days: None, ephemeral: false };
        assert!(none.validate().is_err());
        let eph = Retention { keep_messages: Some(1), keep_days: None, ephemeral: true };
        assert!(eph.validate().is_err());
    }

    #[test]
    fn cutoffs() {
        let r = Retention::last_messages(3);
        assert_eq!(r.count_cutoff(2), None);
        assert_eq!(r.count_cutoff(3), None);
        assert_eq!(r.count_cutoff(10), Some(7));
        let d = Retention { keep_messages: None, keep_days: Some(1), ephemeral: false };
        assert_eq!(d.age_cutoff_ms(100_000_000), Some(100_000_000 - 86_400_000));
    }
}
