//! Argon2id password hashing (the argon2 crate's defaults: m=19456 KiB, t=2, p=1).
//! A hash costs ~25 ms of CPU, so it runs on the blocking pool behind a semaphore:
//! the async threads keep serving sockets, and a burst of sign-ins cannot take all
//! cores or memory.

use std::sync::Arc;

use argon2::{
    Argon2,
    password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash},
};
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("password hashing task failed")]
    Join,
}

#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
}

impl Hasher {
    pub fn new(concurrency: usize) -> Self {
        Hasher { permits: Arc::new(Semaphore::new(concurrency.max(1))) }
    }

    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let _permit = self.permits.acquire().await.map_err(|_| HashError::Join)?;
        let pw = password.to_string();
        tokio::task::spawn_blocking(move || hash_now(&pw)).await.map_err(|_| HashError::Join)?
    }

    /// True when `password` matches the stored PHC string `hash`.
    pub async fn verify(&self, password: &str, hash: &str) -> Result<bool, HashError> {
        let _permit = self.permits.acquire().await.map_err(|_| HashError::Join)?;
        let pw = password.to_string();
        let h = hash.to_string();
        tokio::task::spawn_blocking(move || verify_now(&pw, &h)).await.map_err(|_| HashError::Join)?
    }

    /// Spends the same effort as a real check, for sign-ins naming unknown accounts, so
    /// response times do not tell which emails have accounts.
    pub async fn verify_dummy(&self, password: &str) {
        static DUMMY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        let dummy = DUMMY.get_or_init(|| hash_now("dummy-password-for-timing").ok());
        if let Some(h) = dummy {
            let _ = self.verify(password, h).await;
        }
    }
}

fn hash_now(pw: &str) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| HashError::Hash(e.to_string()))?;
    PasswordHasher::<PasswordHash>::hash_password_with_salt(&Argon2::default(), pw.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Hash(e.to_string()))
}

fn verify_now(pw: &str, hash: &str) -> Result<bool, HashError> {
    let parsed = PasswordHash::new(hash).map_err(|e| HashError::Hash(e.to_string()))?;
    Ok(Argon2::default().verify_password(pw.as_bytes(), &parsed).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let h = Hasher::new(1);
        let hash = h.hash("correct horse").await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(h.verify("correct horse", &hash).await.unwrap());
        assert!(!h.verify("correct horsE", &hash).await.unwrap());
    }
}
