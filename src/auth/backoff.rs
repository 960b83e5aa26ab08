//! The per-account sign-in back-off (on top of the per-address budget): after
//! `free` attempts, each further attempt makes the next one wait, 1 s doubling up to a
//! cap of minutes. Attempts are counted when they START (before the password is
//! checked) and a success clears the count, so that many attempts sent at once cannot
//! all slip through before the first failure is recorded. The cap is what keeps an
//! attacker from locking a person out for long; the known-device exemption
//! (`auth::device`) is what lets the person in meanwhile.
//!
//! [`Rule`] is the arithmetic shared by this node's [`Table`] and the Redis script of
//! `bus::redis` (several nodes: one count for the whole cluster).

use std::{collections::HashMap, time::Duration};

use tokio::time::Instant;

/// What counts as too many, and how long they make one wait.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// Attempts that cost nothing (typos happen).
    pub free: u32,
    /// The first wait; each further attempt doubles it.
    pub base: Duration,
    /// The longest wait.
    pub max: Duration,
    /// A count with no attempt for this long is forgotten.
    pub forget: Duration,
}

impl Rule {
    /// The wait imposed after the `n`-th attempt (1-based): none while `n <= free`.
    pub fn wait_after(&self, n: u32) -> Duration {
        if n <= self.free {
            return Duration::ZERO;
        }
        let doublings = (n - self.free - 1).min(30);
        self.base.saturating_mul(1u32 << doublings).min(self.max)
    }
}

/// One key's attempts on this node.
struct Entry {
    attempts: u32,
    last: Instant,
    /// No attempt before this.
    until: Instant,
}

/// Entries kept at most: each is ~100 bytes; past this, entries no longer waiting are
/// dropped, and if that is not enough a new key goes uncounted (the per-address budget
/// still holds) rather than memory growing without bound.
const MAX_ENTRIES: usize = 100_000;

/// The back-off state of this node (one node, or several while Redis is unreachable).
pub struct Table {
    rule: Rule,
    entries: parking_lot::Mutex<HashMap<String, Entry>>,
}

impl Table {
    pub fn new(rule: Rule) -> Self {
        Table { rule, entries: Default::default() }
    }

    pub fn rule(&self) -> Rule {
        self.rule
    }

    /// Counts an attempt under `key`: `Ok` to go ahead, or how long to wait first.
    pub fn attempt(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut map = self.entries.lock();
        if let Some(e) = map.get_mut(key) {
            if e.until > now {
                return Err(e.until - now);
            }
            if now.duration_since(e.last) >= self.rule.forget {
                e.attempts = 0;
            }
            e.attempts = e.attempts.saturating_add(1);
            e.last = now;
            e.until = now + self.rule.wait_after(e.attempts);
            return Ok(());
        }
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, e| e.until > now);
            if map.len() >= MAX_ENTRIES {
                tracing::warn!(entries = map.len(), "sign-in back-off table full: a new key goes uncounted");
                return Ok(());
            }
        }
        map.insert(key.to_string(), Entry { attempts: 1, last: now, until: now + self.rule.wait_after(1) });
        Ok(())
    }

    /// A success: the key starts over.
    pub fn clear(&self, key: &str) {
        self.entries.lock().remove(key);
    }

    /// Forgets keys with no attempt for `forget` and no wait running (housekeeping).
    pub fn retain_recent(&self) {
        let now = Instant::now();
        let forget = self.rule.forget;
        self.entries.lock().retain(|_, e| e.until > now || now.duration_since(e.last) < forget);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> Rule {
        Rule { free: 3, base: Duration::from_secs(1), max: Duration::from_secs(300), forget: Duration::from_secs(900) }
    }

    #[test]
    fn waits_double_from_the_first_attempt_past_the_free_ones_up_to_the_cap() {
        let r = rule();
        let waits: Vec<u64> = (1..=14).map(|n| r.wait_after(n).as_secs()).collect();
        assert_eq!(waits, [0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(r.wait_after(u32::MAX), Duration::from_secs(300));
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_wait_their_turn_success_clears_and_idle_keys_are_forgotten() {
        let t = Table::new(rule());
        for _ in 0..4 {
            assert!(t.attempt("acct:1").is_ok());
        }
        // The fourth started a 1 s wait: a fifth, at once, is told how long.
        assert_eq!(t.attempt("acct:1"), Err(Duration::from_secs(1)));
        // Another key is not affected.
        assert!(t.attempt("acct:2").is_ok());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(t.attempt("acct:1").is_ok());
        assert_eq!(t.attempt("acct:1"), Err(Duration::from_secs(2)));
        // A success starts over.
        t.clear("acct:1");
        for _ in 0..3 {
            assert!(t.attempt("acct:1").is_ok());
        }
        // Fifteen quiet minutes: forgotten.
        tokio::time::advance(Duration::from_secs(900)).await;
        t.retain_recent();
        assert!(t.entries.lock().is_empty());
    }
}
