//! The known-device cookie: a browser that once signed in to an account successfully
//! gets a cookie naming that account, signed by the server (HMAC-SHA256 under a key
//! kept in the database's settings, so every node shares it). A sign-in carrying a
//! valid one for the same account is exempt from the account's back-off: an attacker
//! guessing from elsewhere cannot keep the person out of their own browser. It is not
//! a credential: the password is still needed, and the per-address budget still
//! applies; its own failed attempts are counted under the device (a stolen cookie
//! buys one guesser one more budget, no more).
//!
//! Value: `<user id>.<16 random bytes, hex>.<HMAC of both, hex>`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::UserId;

type HmacSha256 = Hmac<Sha256>;

/// The MAC of a device cookie's body.
fn mac(key: &[u8], user: UserId, nonce: &str) -> Option<HmacSha256> {
    let mut m = HmacSha256::new_from_slice(key).ok()?;
    m.update(format!("rtm-device|{user}|{nonce}").as_bytes());
    Some(m)
}

/// A fresh device cookie value for `user`.
pub fn issue(key: &[u8], user: UserId) -> Option<String> {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).ok()?;
    let nonce = hex::encode(nonce);
    let tag = hex::encode(mac(key, user, &nonce)?.finalize().into_bytes());
    Some(format!("{user}.{nonce}.{tag}"))
}

/// The device id (its nonce) of `value` when it is a valid cookie for `user`.
pub fn verify<'a>(key: &[u8], user: UserId, value: &'a str) -> Option<&'a str> {
    let mut parts = value.split('.');
    let (u, nonce, tag) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || u.parse::<UserId>().ok()? != user || nonce.len() != 32 {
        return None;
    }
    let tag = hex::decode(tag).ok()?;
    // Constant-time comparison (hmac's verify_slice).
    mac(key, user, nonce)?.verify_slice(&tag).ok()?;
    Some(nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_is_valid_for_its_account_and_key_only() {
        let key = [7u8; 32];
        let c = issue(&key, 42).unwrap();
        let nonce = verify(&key, 42, &c).unwrap();
        assert_eq!(nonce.len(), 32);
        assert!(verify(&key, 43, &c).is_none(), "another account");
        assert!(verify(&[8u8; 32], 42, &c).is_none(), "another key");
        let forged = c.replace("42.", "43.");
        assert!(verify(&key, 43, &forged).is_none(), "the account is signed");
        let mut tampered = c.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == '0' { '1' } else { '0' });
        assert!(verify(&key, 42, &tampered).is_none());
        for junk in ["", "42", "42..", "42.x.y", "42.ab.cd.ef", "\u{0}"] {
            assert!(verify(&key, 42, junk).is_none(), "{junk:?}");
        }
        assert_ne!(issue(&key, 42).unwrap(), c, "a fresh nonce each time");
    }
}
