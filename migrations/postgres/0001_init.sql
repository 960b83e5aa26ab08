-- RT Messenger schema (PostgreSQL). Flags and times are BIGINT: sqlx's Any driver
-- reads integers as i64; the same types keep both schemas alike. Times are Unix milliseconds.

CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    email         TEXT   NOT NULL,
    email_lc      TEXT   NOT NULL UNIQUE,
    username      TEXT   NOT NULL,
    username_lc   TEXT   NOT NULL UNIQUE,
    first_name    TEXT   NOT NULL,
    last_name     TEXT   NOT NULL,
    password_hash TEXT   NOT NULL,
    is_admin      BIGINT NOT NULL DEFAULT 0,
    disabled      BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_hash   TEXT   PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE api_tokens (
    id           BIGSERIAL PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT   NOT NULL,
    token_hash   TEXT   NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX api_tokens_user ON api_tokens(user_id);

CREATE TABLE invites (
    code_hash  TEXT   PRIMARY KEY,
    created_by BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_by    BIGINT REFERENCES users(id) ON DELETE SET NULL,
    used_at    BIGINT
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- A room or a DM conversation. DMs have kind 'dm', no name, and dm_key "low:high".
CREATE TABLE rooms (
    id                  BIGSERIAL PRIMARY KEY,
    kind                TEXT   NOT NULL,
    name                TEXT,
    name_lc             TEXT   UNIQUE,
    dm_key              TEXT   UNIQUE,
    topic               TEXT   NOT NULL DEFAULT '',
    is_private          BIGINT NOT NULL DEFAULT 0,
    owner_id            BIGINT REFERENCES users(id) ON DELETE SET NULL,
    keep_messages       BIGINT,
    keep_days           BIGINT,
    ephemeral           BIGINT NOT NULL DEFAULT 0,
    last_seq            BIGINT NOT NULL DEFAULT 0,
    created_at          BIGINT NOT NULL
);

CREATE TABLE memberships (
    room_id       BIGINT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    user_id       BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    joined_at     BIGINT NOT NULL,
    last_read_seq BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX memberships_user ON memberships(user_id);

-- Who has ever joined a room: the welcome notice goes out on the first join only.
CREATE TABLE first_joins (
    room_id BIGINT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (room_id, user_id)
);

-- Kept events of a room, by per-room sequence number. kind: 'text', 'joined', 'left'.
CREATE TABLE messages (
    room_id    BIGINT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    author_id  BIGINT NOT NULL,
    kind       TEXT   NOT NULL,
    body       TEXT   NOT NULL,
    client_id  TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, seq)
);
CREATE UNIQUE INDEX messages_client_id ON messages(room_id, author_id, client_id) WHERE client_id IS NOT NULL;
CREATE INDEX messages_created ON messages(created_at);
