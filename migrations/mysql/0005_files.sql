-- Files and images (issue 13). One row per upload; the bytes are a blob named by
-- their SHA-256 (`hash`), outside the database (store/blobs.rs), and so is an image's
-- thumbnail (`thumb_hash`). An upload is pending (seq NULL) until a `send` attaches it
-- to that message: then it goes with the message (delete action, retention trims,
-- room deletion: the foreign keys cascade in the same transaction). A blob no row
-- names any more is removed from disk by the sweeper (chat/files.rs).
CREATE TABLE files (
    id          VARCHAR(32)  NOT NULL PRIMARY KEY,
    hash        VARCHAR(64)  NOT NULL,
    name        VARCHAR(400) NOT NULL,
    mime        VARCHAR(255) NOT NULL,
    size        BIGINT       NOT NULL,
    width       BIGINT,
    height      BIGINT,
    thumb_hash  VARCHAR(64),
    uploader_id BIGINT       NOT NULL,
    room_id     BIGINT       NOT NULL,
    seq         BIGINT,
    position    BIGINT       NOT NULL DEFAULT 0,
    created_at  BIGINT       NOT NULL,
    KEY files_message (room_id, seq),
    KEY files_hash (hash),
    KEY files_thumb (thumb_hash),
    KEY files_uploader (uploader_id),
    KEY files_pending (seq, created_at),
    CONSTRAINT files_uploader_fk FOREIGN KEY (uploader_id) REFERENCES users(id) ON DELETE CASCADE,
    CONSTRAINT files_room_fk FOREIGN KEY (room_id) REFERENCES rooms(id) ON DELETE CASCADE,
    CONSTRAINT files_message_fk FOREIGN KEY (room_id, seq) REFERENCES messages(room_id, seq) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
