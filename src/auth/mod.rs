//! Credentials: password hashing, the secrets behind sessions, API tokens and
//! invite links, the per-account sign-in back-off ([`backoff`]) and the known-device
//! cookie that is exempt from it ([`device`]). Secrets are 32 random bytes shown to
//! their holder once (hex) and stored only as their SHA-256, so a leaked database does
//! not leak live sessions.

pub mod backoff;
pub mod device;
pub mod password;

pub use password::{HashError, Hasher};

use sha2::{Digest, Sha256};

/// Prefix that marks API tokens, so a leaked one is recognisable in logs and scanners.
pub const API_TOKEN_PREFIX: &str = "rtm_";

/// A fresh 256-bit secret, hex encoded.
pub fn new_secret() -> Result<String, getrandom::Error> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf)?;
    Ok(hex::encode(buf))
}

/// What the store keeps of a secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_hashed() {
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(hash_secret(&a), hash_secret(&a));
        assert_ne!(hash_secret(&a), a);
    }
}
