//! The SQL of files and attachments (issue 13), a child of `sql.rs` so it shares its
//! helpers. A row of `files` is an upload; `seq` names the message it is attached to
//! (NULL while pending). The rows go with their message through the foreign keys
//! (retention trims, keep-days pruning, the ephemeral switch, room deletion), and the
//! delete action removes them explicitly (a deleted message keeps its row as a
//! tombstone). The blobs themselves are the sweeper's business (`chat::files`).

use super::*;
use crate::domain::files::StoredFile;

const FILE_COLS: &str = "f.id, f.hash, f.name, f.mime, f.size, f.width, f.height, f.thumb_hash, f.uploader_id, f.room_id, f.seq, f.position, f.created_at";

fn file_from(row: &AnyRow) -> Result<StoredFile, sqlx::Error> {
    let (w, h): (Option<i64>, Option<i64>) = (row.try_get("width")?, row.try_get("height")?);
    Ok(StoredFile {
        id: row.try_get("id")?,
        hash: row.try_get("hash")?,
        name: row.try_get("name")?,
        mime: row.try_get("mime")?,
        size: row.try_get("size")?,
        image: w.zip(h),
        thumb_hash: row.try_get("thumb_hash")?,
        uploader: row.try_get("uploader_id")?,
        room: row.try_get("room_id")?,
        seq: row.try_get("seq")?,
        position: row.try_get("position")?,
        created_at: row.try_get("created_at")?,
    })
}

impl SqlStore {
    /// Attaches a text's pending uploads, inside the append's transaction. Only
    /// uploads still pending, of this author and room, are taken (`chat::files`
    /// checked them; a concurrent send of the same upload by the same person attaches
    /// it to whichever commits first).
    pub(super) async fn attach_files(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        m: &NewMessage,
        seq: Seq,
    ) -> Result<(), sqlx::Error> {
        for (pos, id) in m.attachments.iter().enumerate() {
            self.q("UPDATE files SET seq = $1, position = $2
                    WHERE id = $3 AND room_id = $4 AND uploader_id = $5 AND seq IS NULL")
                .bind(seq)
                .bind(pos as i64)
                .bind(id.clone())
                .bind(m.room_id)
                .bind(m.author_id)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Fills in the attachments of a page's texts: one query per page, on the
    /// connection that read it (like reactions).
    pub(super) async fn decorate_files(
        &self,
        conn: &mut Conn,
        room: RoomId,
        rows: &mut [StoredMessage],
    ) -> Result<(), sqlx::Error> {
        let texts = || rows.iter().filter(|m| m.kind == MessageKind::Text && !m.deleted);
        let (Some(lo), Some(hi)) = (texts().map(|m| m.seq).min(), texts().map(|m| m.seq).max()) else {
            return Ok(());
        };
        let sql = format!(
            "SELECT {FILE_COLS} FROM files f WHERE f.room_id = $1 AND f.seq >= $2 AND f.seq <= $3 ORDER BY f.seq, f.position"
        );
        let found = self.q(sql).bind(room).bind(lo).bind(hi).fetch_all(&mut **conn).await?;
        if found.is_empty() {
            return Ok(());
        }
        let mut by_seq: HashMap<Seq, Vec<StoredFile>> = HashMap::new();
        for r in &found {
            let f = file_from(r)?;
            if let Some(seq) = f.seq {
                by_seq.entry(seq).or_default().push(f);
            }
        }
        for m in rows.iter_mut() {
            if let Some(v) = by_seq.remove(&m.seq) {
                m.attachments = v;
            }
        }
        Ok(())
    }

    pub(super) async fn files_insert(&self, f: &StoredFile) -> StoreResult<()> {
        self.q("INSERT INTO files (id, hash, name, mime, size, width, height, thumb_hash, uploader_id, room_id, seq, position, created_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, 0, $11)")
            .bind(f.id.clone())
            .bind(f.hash.clone())
            .bind(f.name.clone())
            .bind(f.mime.clone())
            .bind(f.size)
            .bind(f.image.map(|(w, _)| w))
            .bind(f.image.map(|(_, h)| h))
            .bind(f.thumb_hash.clone())
            .bind(f.uploader)
            .bind(f.room)
            .bind(f.created_at)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub(super) async fn files_user_bytes(&self, user: UserId) -> StoreResult<i64> {
        // CAST: PostgreSQL's SUM of BIGINT is NUMERIC, MySQL's DECIMAL.
        let sql = match self.backend {
            Backend::Mysql => "SELECT CAST(COALESCE(SUM(size), 0) AS SIGNED) AS n FROM files WHERE uploader_id = $1",
            Backend::Sqlite | Backend::Postgres => {
                "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) AS n FROM files WHERE uploader_id = $1"
            }
        };
        let row = self.q(sql).bind(user).fetch_one(&self.pool).await?;
        Ok(row.try_get("n")?)
    }

    pub(super) async fn files_readable(&self, id: &str, viewer: UserId) -> StoreResult<Option<StoredFile>> {
        // Membership is read here, on every request: a link copied to someone who is
        // not (or no longer) a member finds nothing, exactly like a missing file.
        let sql = format!(
            "SELECT {FILE_COLS} FROM files f JOIN memberships ms ON ms.room_id = f.room_id AND ms.user_id = $2
             WHERE f.id = $1 AND (f.seq IS NOT NULL OR f.uploader_id = $2)"
        );
        let row = self.q(sql).bind(id.to_string()).bind(viewer).fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(file_from).transpose()?)
    }

    pub(super) async fn files_by_id_list(&self, ids: &[String]) -> StoreResult<Vec<(StoredFile, Option<String>)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ph: Vec<String> = (1..=ids.len()).map(|k| self.ph(k)).collect();
        let sql = format!(
            "SELECT {FILE_COLS}, m.client_id AS m_client_id FROM files f
             LEFT JOIN messages m ON m.room_id = f.room_id AND m.seq = f.seq
             WHERE f.id IN ({})",
            ph.join(", ")
        );
        let mut q = self.q(sql);
        for id in ids {
            q = q.bind(id.clone());
        }
        let rows = q.fetch_all(&self.pool).await?;
        Ok(rows.iter().map(|r| Ok((file_from(r)?, r.try_get("m_client_id")?))).collect::<Result<_, sqlx::Error>>()?)
    }

    pub(super) async fn files_referenced(&self, hashes: &[String]) -> StoreResult<Vec<String>> {
        let mut out = Vec::new();
        for chunk in hashes.chunks(400) {
            let n = self.padded(chunk.len());
            let ph: Vec<String> = (1..=n).map(|k| self.ph(k)).collect();
            let list = ph.join(", ");
            // The same list twice: SQLite's `?` are positional, so bind it twice.
            let ph2: Vec<String> = (n + 1..=2 * n).map(|k| self.ph(k)).collect();
            let sql = format!(
                "SELECT hash AS h FROM files WHERE hash IN ({list})
                 UNION SELECT thumb_hash AS h FROM files WHERE thumb_hash IN ({})",
                ph2.join(", ")
            );
            let mut q = self.q(sql);
            for _ in 0..2 {
                for k in 0..n {
                    q = q.bind(chunk[k.min(chunk.len() - 1)].clone());
                }
            }
            for r in q.fetch_all(&self.pool).await? {
                out.push(r.try_get("h")?);
            }
        }
        Ok(out)
    }

    pub(super) async fn files_delete_pending(&self, before: i64) -> StoreResult<u64> {
        let r = self
            .q("DELETE FROM files WHERE seq IS NULL AND created_at < $1")
            .bind(before)
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected())
    }
}
