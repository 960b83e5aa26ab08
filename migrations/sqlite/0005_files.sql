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
    uploader_id BIGINT       NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    room_id     BIGINT       NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    seq         BIGINT,
    position    BIGINT       NOT NULL DEFAULT 0,
    created_at  BIGINT       NOT NULL,
    FOREIGN KEY (room_id, seq) REFERENCES messages(room_id, seq) ON DELETE CASCADE
);
CREATE INDEX files_message ON files (room_id, seq);
CREATE INDEX files_hash ON files (hash);
CREATE INDEX files_thumb ON files (thumb_hash);
CREATE INDEX files_uploader ON files (uploader_id);
CREATE INDEX files_pending ON files (created_at) WHERE seq IS NULL;
