//! Files and images (issue 13): the rules of uploading, attaching, downloading and
//! forgetting files. An upload is streamed to the blob store while hashed (limits
//! checked as it arrives), sniffed, and, if its bytes are one of our four image
//! formats, decoded on the blocking pool with hard limits (a decompression bomb is
//! refused, not allocated) and thumbnailed. Its row is then kept "pending" for its
//! uploader in that room until a `send` attaches it (`messages.rs`); pending rows older
//! than a day go. Reading a file checks the reader's CURRENT membership every time.
//!
//! Blobs are shared by content, so a blob is deleted only when no row names it: the
//! sweeper ([`spawn_sweeper`]) runs right after anything that may have dropped rows
//! (the pipeline pokes it after each commit: a delete action or a retention trim) and
//! periodically. Its race with an upload of the same bytes is closed by ordering,
//! not by a lock (which several nodes would not share): an upload commits its row
//! BEFORE it looks for the blob, and the sweeper hides the blob BEFORE it re-checks
//! for rows. Either the sweeper's re-check sees the new row (and puts the blob back),
//! or the upload finds no blob and stores its own copy (ARCHITECTURE.md "Files").

use std::{
    collections::HashSet,
    io,
    path::{Path, PathBuf},
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use tokio::sync::{Notify, Semaphore};

use super::{Actor, Chat, ChatError, ChatResult, now_ms};
use crate::{
    config::Config,
    domain::{
        DomainError, RoomId,
        files::{self as rules, AcceptedTypes, MAX_ATTACHMENTS, StoredFile},
    },
    store::{
        Room,
        blobs::{BlobError, BlobReader, BlobStore, LocalBlobs, Staged},
    },
    ws::protocol::{Attachment, ImageSize},
};

/// A generous estimate of an attachment object's JSON besides its name.
pub const ATTACHMENT_OVERHEAD: usize = 300;
/// Longest side of a thumbnail, in pixels.
pub const THUMB_SIDE: u32 = 320;
/// Widest and tallest image we decode.
pub const MAX_IMAGE_SIDE: u32 = 16_384;
/// Most memory one decode may allocate (an 8k × 8k RGBA image is 256 MiB).
pub const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024;
/// Pending uploads not attached within this are deleted.
pub const PENDING_MS: i64 = 24 * 3600 * 1000;
/// The periodic sweep (pending uploads, leftovers, unreferenced blobs).
const SWEEP_PERIOD: Duration = Duration::from_secs(600);
/// Decodes at once: each may take up to [`MAX_DECODE_BYTES`].
const DECODES: usize = 2;

/// Why a file operation was refused. Each has a stable code (PROTOCOL §4).
#[derive(Debug, Clone, thiserror::Error)]
pub enum FileError {
    #[error("the file is larger than {0} bytes")]
    TooLarge(u64),
    #[error("this upload would take you past your storage quota of {0} bytes")]
    QuotaExceeded(u64),
    #[error("files of type {0} are not accepted on this server")]
    TypeNotAllowed(String),
    /// Claims to be (or sniffs as) an image that does not decode within the limits.
    #[error("the image was refused: {0}")]
    ImageRejected(String),
    #[error("ephemeral rooms keep nothing, so they take no files")]
    EphemeralRoom,
    #[error("an attachment is not one of your pending uploads in this room")]
    AttachmentNotFound,
    #[error("no such file")]
    NotFound,
    #[error("the upload did not arrive completely")]
    BodyFailed,
    /// The name is empty once path parts and control characters are gone.
    #[error("{0}")]
    BadName(String),
}

impl FileError {
    pub fn code(&self) -> &'static str {
        match self {
            FileError::TooLarge(_) => "file_too_large",
            FileError::QuotaExceeded(_) => "quota_exceeded",
            FileError::TypeNotAllowed(_) => "file_type_not_allowed",
            FileError::ImageRejected(_) => "image_rejected",
            FileError::EphemeralRoom => "room_is_ephemeral",
            FileError::AttachmentNotFound => "attachment_not_found",
            FileError::NotFound => "file_not_found",
            FileError::BodyFailed | FileError::BadName(_) => "bad_request",
        }
    }

    /// The HTTP status it is answered with.
    pub fn status(&self) -> u16 {
        match self {
            FileError::TooLarge(_) | FileError::QuotaExceeded(_) => 413,
            FileError::TypeNotAllowed(_) => 415,
            FileError::ImageRejected(_) => 422,
            FileError::EphemeralRoom => 409,
            FileError::AttachmentNotFound | FileError::NotFound => 404,
            FileError::BodyFailed | FileError::BadName(_) => 400,
        }
    }
}

/// The limits of `--max-file-bytes`, `--user-storage-quota`, `--accepted-file-types`
/// and where blobs live (`--files-dir`).
#[derive(Debug, Clone)]
pub struct FilePolicy {
    pub max_file_bytes: u64,
    pub user_quota: u64,
    pub accepted: AcceptedTypes,
    pub dir: PathBuf,
}

impl FilePolicy {
    pub fn from_config(c: &Config) -> Self {
        FilePolicy {
            max_file_bytes: c.max_file_bytes,
            user_quota: c.user_storage_quota,
            accepted: c.accepted_file_types.clone(),
            dir: c.files_dir.clone().unwrap_or_else(|| c.data_dir.join("files")),
        }
    }
}

/// The chat layer's part of files: the blob store, the decode budget, the sweeper's
/// doorbell.
pub struct Files {
    blobs: Arc<dyn BlobStore>,
    decodes: Semaphore,
    /// Rung after anything that may have dropped file rows.
    pub(super) poke: Arc<Notify>,
    /// Whether any blob may exist: a single server that never stored a file skips
    /// sweeps.
    seen: AtomicBool,
}

impl Files {
    /// `create`: make the directories (a serving node); a CLI command only reads.
    pub(super) async fn open(policy: &FilePolicy, create: bool, poke: Arc<Notify>) -> ChatResult<Self> {
        let local = if create {
            LocalBlobs::open(&policy.dir)
                .await
                .map_err(|e| ChatError::Internal(format!("files directory {}: {e}", policy.dir.display())))?
        } else {
            LocalBlobs::at(&policy.dir)
        };
        Ok(Files { blobs: Arc::new(local), decodes: Semaphore::new(DECODES), poke, seen: AtomicBool::new(true) })
    }
}

/// What a verified image yields.
struct ImageFacts {
    mime: &'static str,
    width: u32,
    height: u32,
    thumb: Vec<u8>,
}

/// The attachment object of a kept file.
pub fn attachment_of(f: &StoredFile) -> Attachment {
    // The name in the URL is for people and "save as"; the server ignores it. A file
    // named `thumb` must not collide with the thumbnail's URL.
    let mut seg = rules::percent_encode(&f.name);
    if seg == "thumb" {
        seg.push_str("%2E");
    }
    Attachment {
        id: f.id.clone(),
        name: f.name.clone(),
        size: f.size,
        mime: f.mime.clone(),
        image: f.image.map(|(width, height)| ImageSize { width, height }),
        url: format!("/api/files/{}/{seg}", f.id),
        thumb_url: f.thumb_hash.as_ref().map(|_| format!("/api/files/{}/thumb", f.id)),
    }
}

/// The type a thumbnail is served as: JPEG for JPEG photos, else PNG (alpha).
pub fn thumb_type(f: &StoredFile) -> &'static str {
    if f.mime == "image/jpeg" { "image/jpeg" } else { "image/png" }
}

fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn new_id() -> ChatResult<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| ChatError::Internal(format!("no randomness: {e}")))?;
    Ok(hex::encode(b))
}

/// Sniffs and, for our image formats, decodes the staged file within the limits and
/// makes its thumbnail. Runs on the blocking pool. `Ok(None)`: not an image (and not
/// claiming to be one).
fn inspect(path: &Path, declared: &str) -> Result<Option<ImageFacts>, FileError> {
    use image::ImageFormat as F;
    let internal = |e: io::Error| FileError::ImageRejected(format!("could not be read: {e}"));
    let reader = image::ImageReader::open(path).map_err(internal)?.with_guessed_format().map_err(internal)?;
    let mime = match reader.format() {
        Some(F::Png) => "image/png",
        Some(F::Jpeg) => "image/jpeg",
        Some(F::Gif) => "image/gif",
        Some(F::WebP) => "image/webp",
        _ if rules::claims_image(declared) => {
            return Err(FileError::ImageRejected(format!("it was sent as {declared} but is not one")));
        }
        _ => return Ok(None),
    };
    let mut reader = reader;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| FileError::ImageRejected(e.to_string()))?;
    let (width, height) = (img.width(), img.height());
    // Never larger than the picture: a small image's thumbnail is itself, re-encoded
    // (it still goes through the encoder, which drops whatever else the file held).
    let small =
        if width <= THUMB_SIDE && height <= THUMB_SIDE { img.clone() } else { img.thumbnail(THUMB_SIDE, THUMB_SIDE) };
    drop(img);
    let mut thumb = Vec::new();
    let encoded = if mime == "image/jpeg" {
        let rgb = image::DynamicImage::ImageRgb8(small.to_rgb8());
        rgb.write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(&mut thumb, 80))
    } else {
        small.write_to(&mut io::Cursor::new(&mut thumb), F::Png)
    };
    encoded.map_err(|e| FileError::ImageRejected(format!("no thumbnail: {e}")))?;
    Ok(Some(ImageFacts { mime, width, height, thumb }))
}

/// A file about to be read: what the download answer needs.
#[derive(Debug, Clone)]
pub struct FileMeta {
    pub file: StoredFile,
    /// The thumbnail rather than the file.
    pub thumb: bool,
    /// The Content-Type to serve: a verified image's, or `application/octet-stream`.
    pub serve_type: &'static str,
    /// Whether it may be shown inline (verified images and thumbnails only).
    pub inline_ok: bool,
    /// A strong validator: the blob's hash.
    pub etag: String,
}

impl FileMeta {
    fn blob(&self) -> Option<&str> {
        if self.thumb { self.file.thumb_hash.as_deref() } else { Some(&self.file.hash) }
    }
}

impl Chat {
    /// Keeps an upload as a pending file of `actor` in `room`. `body` is read as it
    /// arrives and never past `--max-file-bytes` (or past the declared length's
    /// refusal, before reading anything).
    pub async fn upload_file(
        &self,
        actor: &Actor,
        room: RoomId,
        raw_name: &str,
        declared_type: Option<&str>,
        content_length: Option<u64>,
        body: BoxStream<'_, io::Result<Bytes>>,
    ) -> ChatResult<Attachment> {
        let p = &self.policy.files;
        let name = rules::clean_name(raw_name).map_err(|e| FileError::BadName(e.message))?;
        let declared = rules::normalize_type(declared_type);
        // Not a member: the room does not exist, as far as this person can tell.
        let e = match self.member_room(actor, room).await {
            Err(ChatError::NotMember) => return Err(ChatError::NotFound("room")),
            other => other?,
        };
        // Who may not post here (muted, a read-only room, a blocked DM) may not
        // upload into it either: the file could never be sent.
        let e = self.check_post_exact(actor, e).await?;
        if e.room.archived {
            return Err(ChatError::RoomArchived);
        }
        if e.room.retention.ephemeral {
            return Err(FileError::EphemeralRoom.into());
        }
        // A declared type that is refused is refused before reading the body (an
        // unnamed type is judged once the bytes are sniffed).
        if declared != rules::OCTET_STREAM && !p.accepted.allows(&declared) && !rules::claims_image(&declared) {
            return Err(FileError::TypeNotAllowed(declared).into());
        }
        if content_length.is_some_and(|n| n > p.max_file_bytes) {
            return Err(FileError::TooLarge(p.max_file_bytes).into());
        }
        let used = u64::try_from(self.store.user_file_bytes(actor.user.id).await?).unwrap_or(0);
        if used.saturating_add(content_length.unwrap_or(0)) > p.user_quota {
            return Err(FileError::QuotaExceeded(p.user_quota).into());
        }
        let staged = match self.files.blobs.stage(body, p.max_file_bytes).await {
            Ok(s) => s,
            Err(BlobError::TooLarge(_)) => return Err(FileError::TooLarge(p.max_file_bytes).into()),
            Err(BlobError::Body(e)) => {
                tracing::debug!(error = %e, "upload body failed");
                return Err(FileError::BodyFailed.into());
            }
            Err(BlobError::Io(e)) => return Err(ChatError::Internal(format!("staging an upload: {e}"))),
        };
        // Concurrent uploads of one person may each pass this: the quota is a bound
        // on what one person keeps, not an exact ledger.
        if used.saturating_add(staged.size) > p.user_quota {
            self.files.blobs.discard(staged).await;
            return Err(FileError::QuotaExceeded(p.user_quota).into());
        }
        match self.keep_upload(actor, &e.room, name, &declared, staged).await {
            Ok(f) => Ok(attachment_of(&f)),
            Err(e) => Err(e),
        }
    }

    /// Sniffs, decodes, checks the type and keeps the row, then the blobs (in that
    /// order: see the module's note on the sweeper).
    async fn keep_upload(
        &self,
        actor: &Actor,
        room: &Room,
        name: String,
        declared: &str,
        staged: Staged,
    ) -> ChatResult<StoredFile> {
        let facts = {
            let _permit = self.files.decodes.acquire().await.map_err(|e| ChatError::Internal(e.to_string()))?;
            let (path, declared_owned) = (staged.path.clone(), declared.to_string());
            tokio::task::spawn_blocking(move || inspect(&path, &declared_owned))
                .await
                .map_err(|e| ChatError::Internal(format!("image decoding panicked: {e}")))
        };
        let facts = match facts {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => {
                self.files.blobs.discard(staged).await;
                return Err(e.into());
            }
            Err(e) => {
                self.files.blobs.discard(staged).await;
                return Err(e);
            }
        };
        // The type judged from the bytes: a verified image's own; a declared image type
        // the bytes do not bear out (SVG, BMP, a broken PNG) is unknown bytes, as it is
        // then stored and shown, so `image/*` does not let it in.
        let judged = match &facts {
            Some(f) => f.mime,
            None if declared.starts_with("image/") => rules::OCTET_STREAM,
            None => declared,
        };
        if !self.policy.files.accepted.allows(judged) {
            self.files.blobs.discard(staged).await;
            return Err(FileError::TypeNotAllowed(judged.to_string()).into());
        }
        let thumb = match &facts {
            Some(f) => match self.files.blobs.stage_bytes(&f.thumb).await {
                Ok(t) => Some(t),
                Err(e) => {
                    self.files.blobs.discard(staged).await;
                    return Err(ChatError::Internal(format!("staging a thumbnail: {e}")));
                }
            },
            None => None,
        };
        let row = StoredFile {
            id: new_id()?,
            hash: staged.hash.clone(),
            name,
            mime: facts.as_ref().map_or_else(|| rules::shown_type(declared), |f| f.mime.to_string()),
            size: staged.size as i64,
            image: facts.as_ref().map(|f| (i64::from(f.width), i64::from(f.height))),
            thumb_hash: thumb.as_ref().map(|t| t.hash.clone()),
            uploader: actor.user.id,
            room: room.id,
            seq: None,
            position: 0,
            created_at: now_ms(),
        };
        if let Err(e) = self.store.insert_file(&row).await {
            self.files.blobs.discard(staged).await;
            if let Some(t) = thumb {
                self.files.blobs.discard(t).await;
            }
            return Err(e.into());
        }
        self.files.seen.store(true, Ordering::Relaxed);
        let mut placed = self.files.blobs.commit(staged).await;
        if let Some(t) = thumb {
            placed = placed.and(self.files.blobs.commit(t).await);
        }
        if let Err(e) = placed {
            return Err(ChatError::Internal(format!("storing an upload: {e}")));
        }
        tracing::info!(file = %row.id, room = room.id, size = row.size, image = row.image.is_some(), "file uploaded");
        Ok(row)
    }

    /// The files a send attaches, checked: each a pending upload of the sender in
    /// this room (or, for a retried send, already attached to that very send), in
    /// the order given, without repeats.
    pub(super) async fn files_for_send(
        &self,
        actor: &Actor,
        room: &Room,
        client_id: &str,
        ids: &[String],
    ) -> ChatResult<Vec<StoredFile>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let too_many = || {
            DomainError::new("too_many_attachments", format!("a message carries at most {MAX_ATTACHMENTS} attachments"))
        };
        // A repeated id counts once (docs/PROTOCOL.md §3.9); the list is cut short as
        // soon as it names one file too many, so a long list costs nothing.
        let mut wanted: Vec<String> = Vec::with_capacity(ids.len().min(MAX_ATTACHMENTS));
        for id in ids {
            if !wanted.contains(id) {
                if wanted.len() == MAX_ATTACHMENTS {
                    return Err(too_many().into());
                }
                wanted.push(id.clone());
            }
        }
        if room.retention.ephemeral {
            return Err(FileError::EphemeralRoom.into());
        }
        if !wanted.iter().all(|id| valid_id(id)) {
            return Err(FileError::AttachmentNotFound.into());
        }
        let found = self.store.files_by_ids(&wanted).await?;
        let mut out = Vec::with_capacity(wanted.len());
        for id in &wanted {
            let ok = found.iter().find(|(f, attached_to)| {
                f.id == *id
                    && f.uploader == actor.user.id
                    && f.room == room.id
                    && (f.seq.is_none() || attached_to.as_deref() == Some(client_id))
            });
            match ok {
                Some((f, _)) => out.push(f.clone()),
                None => return Err(FileError::AttachmentNotFound.into()),
            }
        }
        Ok(out)
    }

    /// What a download of file `id` (or its thumbnail) needs, if `actor` may read it
    /// now; `file_not_found` otherwise, whatever the reason.
    pub async fn file_meta(&self, actor: &Actor, id: &str, thumb: bool) -> ChatResult<FileMeta> {
        if !valid_id(id) {
            return Err(FileError::NotFound.into());
        }
        let file = self.store.readable_file(id, actor.user.id).await?.ok_or(FileError::NotFound)?;
        let image = file.image.is_some() && rules::IMAGE_TYPES.contains(&file.mime.as_str());
        let (serve_type, etag) = if thumb {
            let Some(h) = &file.thumb_hash else { return Err(FileError::NotFound.into()) };
            (thumb_type(&file), format!("\"t{}\"", &h[..32.min(h.len())]))
        } else if image {
            let t = rules::IMAGE_TYPES.iter().copied().find(|t| *t == file.mime).unwrap_or(rules::OCTET_STREAM);
            (t, format!("\"{}\"", &file.hash[..32.min(file.hash.len())]))
        } else {
            (rules::OCTET_STREAM, format!("\"{}\"", &file.hash[..32.min(file.hash.len())]))
        };
        Ok(FileMeta { inline_ok: thumb || image, serve_type, etag, thumb, file })
    }

    /// The bytes of a file `file_meta` allowed.
    pub async fn open_file(&self, meta: &FileMeta) -> ChatResult<(BlobReader, u64)> {
        let hash = meta.blob().ok_or(FileError::NotFound)?;
        match self.files.blobs.get(hash).await {
            Ok(Some(r)) => Ok(r),
            // A row without its blob: the sweeper or an operator removed it.
            Ok(None) => {
                tracing::warn!(file = %meta.file.id, "a kept file has no blob");
                Err(FileError::NotFound.into())
            }
            Err(e) => Err(ChatError::Internal(format!("reading a file: {e}"))),
        }
    }

    /// Asks the sweeper to look for blobs no row names (after a deletion).
    pub fn files_changed(&self) {
        self.files.poke.notify_one();
    }

    /// Deletes every blob no row names; returns how many. See the module's note for
    /// why hiding comes before the re-check.
    pub async fn sweep_files(&self) -> ChatResult<usize> {
        let blobs = &self.files.blobs;
        let all = blobs.list().await.map_err(|e| ChatError::Internal(format!("listing blobs: {e}")))?;
        // What is on disk decides. With several nodes sharing the directory, another
        // node may store the next blob, and this node would not hear of it: its pokes
        // (a trim or a read here of a file uploaded there) must never be skipped.
        self.files.seen.store(!all.is_empty() || self.bus.shared(), Ordering::Relaxed);
        if all.is_empty() {
            return Ok(0);
        }
        let referenced: HashSet<String> = self.store.referenced_hashes(&all).await?.into_iter().collect();
        let mut removed = 0;
        for h in all.into_iter().filter(|h| !referenced.contains(h)) {
            let hidden = match blobs.hide(&h).await {
                Ok(Some(hidden)) => hidden,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "could not hide a blob");
                    continue;
                }
            };
            let unreferenced =
                matches!(self.store.referenced_hashes(std::slice::from_ref(&h)).await, Ok(v) if v.is_empty());
            let done = if unreferenced { blobs.purge(hidden).await } else { blobs.restore(hidden).await };
            match done {
                Ok(()) if unreferenced => removed += 1,
                Ok(()) => {}
                Err(e) => tracing::warn!(error = %e, "could not finish sweeping a blob"),
            }
        }
        if removed > 0 {
            tracing::info!(removed, "swept unreferenced file blobs");
        }
        Ok(removed)
    }

    /// The periodic part: pending uploads older than a day, staging leftovers.
    async fn expire_files(&self) -> ChatResult<()> {
        let n = self.store.delete_pending_files(now_ms() - PENDING_MS).await?;
        if n > 0 {
            tracing::info!(deleted = n, "deleted pending uploads never attached");
        }
        self.files
            .blobs
            .clean_leftovers(Duration::from_millis(PENDING_MS as u64))
            .await
            .map_err(|e| ChatError::Internal(format!("cleaning file leftovers: {e}")))?;
        Ok(())
    }
}

/// Runs the sweeper until the chat is gone: at once when poked (at most every
/// 500 ms, or twenty times as long as the last sweep took: a sweep walks every blob,
/// so under steady traffic it takes at most ~5% of a core however large the store),
/// and every ten minutes with the pending-upload expiry.
pub(super) fn spawn_sweeper(chat: Weak<Chat>, poke: Arc<Notify>) {
    tokio::spawn(async move {
        let mut next_periodic = Instant::now();
        loop {
            let periodic = tokio::select! {
                _ = poke.notified() => false,
                _ = tokio::time::sleep_until(next_periodic.into()) => true,
            };
            let Some(chat) = chat.upgrade() else { break };
            if periodic {
                next_periodic = Instant::now() + SWEEP_PERIOD;
                if let Err(e) = chat.expire_files().await {
                    tracing::warn!(error = %e, "file expiry failed");
                }
            } else if !chat.files.seen.load(Ordering::Relaxed) {
                continue;
            }
            let started = Instant::now();
            if let Err(e) = chat.sweep_files().await {
                tracing::warn!(error = %e, "file sweep failed");
            }
            drop(chat);
            tokio::time::sleep((started.elapsed() * 20).max(Duration::from_millis(500))).await;
        }
    });
}
