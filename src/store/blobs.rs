//! Where the bytes of uploaded files live: a small trait, [`BlobStore`], keyed by the
//! SHA-256 of the content, and its one implementation today, [`LocalBlobs`], a
//! directory (`--files-dir`, default DATA_DIR/files). The database keeps the rows
//! (`files`); this keeps only bytes, so the same content uploaded twice is stored once.
//!
//! An upload is streamed into a staging file while it is hashed (never held whole in
//! memory), then [`BlobStore::commit`]ted under its hash: a rename in the same
//! directory tree, atomic. Deleting is two steps, [`BlobStore::hide`] then
//! [`BlobStore::purge`] or [`BlobStore::restore`], so the sweeper can re-check the
//! database after the blob became invisible (the race with an upload of the same
//! content, ARCHITECTURE.md "Files"). Several nodes need the same store: the same
//! directory mounted on each (NFS, a shared volume), or a future S3-compatible
//! implementation of this trait (stage locally, `PutObject`, `CopyObject` to hide).

use std::{
    io,
    path::{Path, PathBuf},
    pin::Pin,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, stream::BoxStream};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The body went past the limit; nothing was kept.
    #[error("the upload is larger than {0} bytes")]
    TooLarge(u64),
    /// The client's body failed (closed, too slow); nothing was kept.
    #[error("the upload did not arrive: {0}")]
    Body(io::Error),
    #[error("blob storage: {0}")]
    Io(#[from] io::Error),
}

pub type BlobResult<T> = Result<T, BlobError>;

/// A complete upload in the staging area: hashed, on local disk (image decoding reads
/// it from there), not yet visible under its hash.
#[derive(Debug)]
pub struct Staged {
    pub hash: String,
    pub size: u64,
    pub path: PathBuf,
}

/// A blob taken out of sight by [`BlobStore::hide`], to purge or restore.
#[derive(Debug)]
pub struct Hidden {
    pub hash: String,
    path: PathBuf,
}

/// A blob's bytes, to stream out.
pub type BlobReader = Pin<Box<dyn AsyncRead + Send>>;

/// Content-addressed storage of uploaded bytes.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Streams `body` into the staging area while hashing it. Past `limit` bytes it
    /// stops reading and fails with [`BlobError::TooLarge`] (the partial file is gone).
    async fn stage(&self, body: BoxStream<'_, io::Result<Bytes>>, limit: u64) -> BlobResult<Staged>;
    /// Stages a small buffer (a thumbnail).
    async fn stage_bytes(&self, bytes: &[u8]) -> BlobResult<Staged> {
        let one = futures_util::stream::once(async { Ok(Bytes::copy_from_slice(bytes)) }).boxed();
        self.stage(one, u64::MAX).await
    }
    /// Makes a staged blob readable under its hash. If that hash is already stored
    /// (same bytes), the staged copy is dropped.
    async fn commit(&self, staged: Staged) -> BlobResult<()>;
    /// Drops a staged blob that will not be kept.
    async fn discard(&self, staged: Staged);
    /// The bytes of a blob and their length, or None.
    async fn get(&self, hash: &str) -> BlobResult<Option<(BlobReader, u64)>>;
    /// A blob's length, or None.
    async fn size(&self, hash: &str) -> BlobResult<Option<u64>>;
    /// Takes a blob out of sight (readers and [`BlobStore::commit`] see it missing);
    /// None if there is no such blob.
    async fn hide(&self, hash: &str) -> BlobResult<Option<Hidden>>;
    /// Puts a hidden blob back (it turned out to be referenced after all).
    async fn restore(&self, hidden: Hidden) -> BlobResult<()>;
    /// Deletes a hidden blob for good.
    async fn purge(&self, hidden: Hidden) -> BlobResult<()>;
    /// Deletes a blob (hide, then purge), without the sweeper's re-check.
    async fn delete(&self, hash: &str) -> BlobResult<bool> {
        match self.hide(hash).await? {
            Some(h) => self.purge(h).await.map(|_| true),
            None => Ok(false),
        }
    }
    /// The hashes of every stored blob (the sweeper's inventory).
    async fn list(&self) -> BlobResult<Vec<String>>;
    /// Removes staging and hidden leftovers older than `age` (a crash mid-upload or
    /// mid-sweep); returns how many.
    async fn clean_leftovers(&self, age: Duration) -> BlobResult<u64>;
}

/// Whether `s` is a blob name: 64 lower-case hex digits (so a name can never be a
/// path).
pub fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Blobs in a directory: `ab/cd/<hash>` (two levels of 256 keep directories small),
/// staging in `tmp/`, hidden blobs in `trash/`. Staging is inside the same tree so a
/// commit is a rename on one file system, never a copy.
pub struct LocalBlobs {
    root: PathBuf,
}

fn random_name() -> String {
    let mut b = [0u8; 16];
    // No randomness would mean name clashes between concurrent uploads; fall back to
    // the clock and a counter, which are unique within this process.
    if getrandom::fill(&mut b).is_err() {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let t = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
        b[..8].copy_from_slice(&t.to_le_bytes());
        b[8..].copy_from_slice(&N.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_le_bytes());
    }
    hex::encode(b)
}

impl LocalBlobs {
    /// Opens (creating) the directory.
    pub async fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        tokio::fs::create_dir_all(root.join("tmp")).await?;
        tokio::fs::create_dir_all(root.join("trash")).await?;
        Ok(LocalBlobs { root })
    }

    /// The store at `root` as it is, creating nothing (for one-shot CLI commands).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        LocalBlobs { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, hash: &str) -> io::Result<PathBuf> {
        if !is_hash(hash) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a blob name"));
        }
        Ok(self.root.join(&hash[0..2]).join(&hash[2..4]).join(hash))
    }

    async fn remove_quietly(path: &Path) {
        if let Err(e) = tokio::fs::remove_file(path).await
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, path = %path.display(), "could not remove a blob file");
        }
    }
}

#[async_trait]
impl BlobStore for LocalBlobs {
    async fn stage(&self, mut body: BoxStream<'_, io::Result<Bytes>>, limit: u64) -> BlobResult<Staged> {
        let path = self.root.join("tmp").join(random_name());
        let file = tokio::fs::File::create(&path).await?;
        let mut out = tokio::io::BufWriter::with_capacity(64 * 1024, file);
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let result: BlobResult<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(BlobError::Body)?;
                size += chunk.len() as u64;
                if size > limit {
                    return Err(BlobError::TooLarge(limit));
                }
                hasher.update(&chunk);
                out.write_all(&chunk).await?;
            }
            out.flush().await?;
            // On disk before the rows that name it are committed.
            out.get_ref().sync_all().await?;
            Ok(())
        }
        .await;
        drop(out);
        if let Err(e) = result {
            Self::remove_quietly(&path).await;
            return Err(e);
        }
        Ok(Staged { hash: hex::encode(hasher.finalize()), size, path })
    }

    async fn commit(&self, staged: Staged) -> BlobResult<()> {
        let target = self.path_of(&staged.hash)?;
        if tokio::fs::try_exists(&target).await? {
            Self::remove_quietly(&staged.path).await;
            return Ok(());
        }
        if let Some(dir) = target.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        tokio::fs::rename(&staged.path, &target).await?;
        Ok(())
    }

    async fn discard(&self, staged: Staged) {
        Self::remove_quietly(&staged.path).await;
    }

    async fn get(&self, hash: &str) -> BlobResult<Option<(BlobReader, u64)>> {
        match tokio::fs::File::open(self.path_of(hash)?).await {
            Ok(f) => {
                let len = f.metadata().await?.len();
                Ok(Some((Box::pin(f), len)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn size(&self, hash: &str) -> BlobResult<Option<u64>> {
        match tokio::fs::metadata(self.path_of(hash)?).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn hide(&self, hash: &str) -> BlobResult<Option<Hidden>> {
        let from = self.path_of(hash)?;
        let to = self.root.join("trash").join(format!("{hash}.{}", random_name()));
        match tokio::fs::rename(&from, &to).await {
            Ok(()) => Ok(Some(Hidden { hash: hash.to_string(), path: to })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn restore(&self, hidden: Hidden) -> BlobResult<()> {
        // If an upload put the same bytes back meanwhile, this replaces them with
        // identical ones (rename over a file is atomic).
        tokio::fs::rename(&hidden.path, self.path_of(&hidden.hash)?).await?;
        Ok(())
    }

    async fn purge(&self, hidden: Hidden) -> BlobResult<()> {
        Self::remove_quietly(&hidden.path).await;
        Ok(())
    }

    async fn list(&self) -> BlobResult<Vec<String>> {
        let mut out = Vec::new();
        let two_hex = |n: &str| n.len() == 2 && n.bytes().all(|b| b.is_ascii_hexdigit());
        let mut l1 = tokio::fs::read_dir(&self.root).await?;
        while let Some(a) = l1.next_entry().await? {
            let an = a.file_name().to_string_lossy().into_owned();
            if !two_hex(&an) || !a.file_type().await?.is_dir() {
                continue;
            }
            let mut l2 = tokio::fs::read_dir(a.path()).await?;
            while let Some(b) = l2.next_entry().await? {
                if !two_hex(&b.file_name().to_string_lossy()) || !b.file_type().await?.is_dir() {
                    continue;
                }
                let mut l3 = tokio::fs::read_dir(b.path()).await?;
                while let Some(f) = l3.next_entry().await? {
                    let n = f.file_name().to_string_lossy().into_owned();
                    if is_hash(&n) {
                        out.push(n);
                    }
                }
            }
        }
        Ok(out)
    }

    async fn clean_leftovers(&self, age: Duration) -> BlobResult<u64> {
        let mut n = 0;
        for dir in ["tmp", "trash"] {
            let mut l = tokio::fs::read_dir(self.root.join(dir)).await?;
            while let Some(f) = l.next_entry().await? {
                let old = f.metadata().await?.modified().ok().and_then(|m| m.elapsed().ok()).is_some_and(|e| e > age);
                if old {
                    Self::remove_quietly(&f.path()).await;
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[&'static [u8]]) -> BoxStream<'static, io::Result<Bytes>> {
        futures_util::stream::iter(parts.iter().map(|p| Ok(Bytes::from_static(p))).collect::<Vec<_>>()).boxed()
    }

    #[tokio::test]
    async fn stage_commit_get_hide_restore_purge() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::open(dir.path()).await.unwrap();
        let s = blobs.stage(body(&[b"hello ", b"world"]), 100).await.unwrap();
        assert_eq!(s.hash, hex::encode(Sha256::digest(b"hello world")));
        assert_eq!(s.size, 11);
        let hash = s.hash.clone();
        assert!(blobs.get(&hash).await.unwrap().is_none(), "staged is not visible");
        blobs.commit(s).await.unwrap();
        // The same bytes again: stored once.
        let again = blobs.stage(body(&[b"hello world"]), 100).await.unwrap();
        blobs.commit(again).await.unwrap();
        assert_eq!(blobs.list().await.unwrap(), vec![hash.clone()]);
        assert_eq!(blobs.size(&hash).await.unwrap(), Some(11));
        let h = blobs.hide(&hash).await.unwrap().expect("hidden");
        assert!(blobs.get(&hash).await.unwrap().is_none());
        blobs.restore(h).await.unwrap();
        assert!(blobs.get(&hash).await.unwrap().is_some());
        assert!(blobs.delete(&hash).await.unwrap());
        assert!(blobs.list().await.unwrap().is_empty());
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn too_large_stops_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::open(dir.path()).await.unwrap();
        let err = blobs.stage(body(&[b"12345", b"67890"]), 8).await.unwrap_err();
        assert!(matches!(err, BlobError::TooLarge(8)));
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert!(blobs.get("../../etc/passwd").await.is_err());
    }
}
