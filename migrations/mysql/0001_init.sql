-- RT Messenger schema (MySQL 8 / MariaDB 10.5+). The same tables as the SQLite and
-- PostgreSQL schemas: flags and times are BIGINT (sqlx's Any driver reads integers
-- as i64), times are Unix milliseconds.
--
-- Every table is InnoDB, utf8mb4 (full Unicode: emoji and other astral characters)
-- with the BINARY collation utf8mb4_bin: strings compare byte for byte, as on
-- SQLite and PostgreSQL. Case-insensitive names are the *_lc columns, folded by the
-- server before they get here; a *_ci collation would fold again, differently (it
-- would also call 'e' and 'é' the same name).
--
-- Columns that are keys are VARCHAR (MySQL cannot index TEXT without a prefix),
-- sized above what the server's validation lets through.

CREATE TABLE users (
    id            BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    email         VARCHAR(320) NOT NULL,
    email_lc      VARCHAR(320) NOT NULL,
    username      VARCHAR(64)  NOT NULL,
    username_lc   VARCHAR(64)  NOT NULL,
    first_name    VARCHAR(255) NOT NULL,
    last_name     VARCHAR(255) NOT NULL,
    password_hash TEXT         NOT NULL,
    is_admin      BIGINT       NOT NULL DEFAULT 0,
    disabled      BIGINT       NOT NULL DEFAULT 0,
    created_at    BIGINT       NOT NULL,
    UNIQUE KEY email_lc (email_lc),
    UNIQUE KEY username_lc (username_lc)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row, locked by each sign-up: the first account (and only it) becomes the admin
-- even when two first sign-ups run at once (PostgreSQL uses an advisory lock).
CREATE TABLE signup_lock (
    id BIGINT NOT NULL PRIMARY KEY
) ENGINE = InnoDB;
INSERT INTO signup_lock (id) VALUES (1);

CREATE TABLE sessions (
    token_hash   VARCHAR(128) NOT NULL PRIMARY KEY,
    user_id      BIGINT       NOT NULL,
    created_at   BIGINT       NOT NULL,
    last_seen_at BIGINT       NOT NULL,
    expires_at   BIGINT       NOT NULL,
    KEY sessions_user (user_id),
    CONSTRAINT sessions_user_fk FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE api_tokens (
    id           BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id      BIGINT       NOT NULL,
    name         VARCHAR(255) NOT NULL,
    token_hash   VARCHAR(128) NOT NULL,
    created_at   BIGINT       NOT NULL,
    last_used_at BIGINT,
    UNIQUE KEY api_tokens_hash (token_hash),
    KEY api_tokens_user (user_id),
    CONSTRAINT api_tokens_user_fk FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE invites (
    code_hash  VARCHAR(128) NOT NULL PRIMARY KEY,
    created_by BIGINT       NOT NULL,
    created_at BIGINT       NOT NULL,
    expires_at BIGINT       NOT NULL,
    used_by    BIGINT,
    used_at    BIGINT,
    CONSTRAINT invites_by_fk FOREIGN KEY (created_by) REFERENCES users(id) ON DELETE CASCADE,
    CONSTRAINT invites_used_by_fk FOREIGN KEY (used_by) REFERENCES users(id) ON DELETE SET NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- `key` is a reserved word in MySQL: the store quotes it there.
CREATE TABLE settings (
    `key` VARCHAR(191) NOT NULL PRIMARY KEY,
    value TEXT         NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- A room or a DM conversation. DMs have kind 'dm', no name, and dm_key "low:high".
CREATE TABLE rooms (
    id            BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    kind          VARCHAR(16)  NOT NULL,
    name          VARCHAR(255),
    name_lc       VARCHAR(255),
    dm_key        VARCHAR(64),
    topic         TEXT         NOT NULL,
    is_private    BIGINT       NOT NULL DEFAULT 0,
    owner_id      BIGINT,
    keep_messages BIGINT,
    keep_days     BIGINT,
    ephemeral     BIGINT       NOT NULL DEFAULT 0,
    last_seq      BIGINT       NOT NULL DEFAULT 0,
    created_at    BIGINT       NOT NULL,
    UNIQUE KEY name_lc (name_lc),
    UNIQUE KEY rooms_dm_key (dm_key),
    CONSTRAINT rooms_owner_fk FOREIGN KEY (owner_id) REFERENCES users(id) ON DELETE SET NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE memberships (
    room_id       BIGINT NOT NULL,
    user_id       BIGINT NOT NULL,
    joined_at     BIGINT NOT NULL,
    last_read_seq BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id),
    KEY memberships_user (user_id),
    CONSTRAINT memberships_room_fk FOREIGN KEY (room_id) REFERENCES rooms(id) ON DELETE CASCADE,
    CONSTRAINT memberships_user_fk FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
) ENGINE = InnoDB;

-- Who has ever joined a room: the welcome notice goes out on the first join only.
CREATE TABLE first_joins (
    room_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id),
    CONSTRAINT first_joins_room_fk FOREIGN KEY (room_id) REFERENCES rooms(id) ON DELETE CASCADE,
    CONSTRAINT first_joins_user_fk FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
) ENGINE = InnoDB;

-- Kept events of a room, by per-room sequence number. kind: 'text', 'joined', 'left'.
-- The (room, author, client id) key is unique; rows without a client id (NULL) never
-- collide, as with PostgreSQL's partial index.
CREATE TABLE messages (
    room_id    BIGINT      NOT NULL,
    seq        BIGINT      NOT NULL,
    author_id  BIGINT      NOT NULL,
    kind       VARCHAR(16) NOT NULL,
    body       MEDIUMTEXT  NOT NULL,
    client_id  VARCHAR(64),
    created_at BIGINT      NOT NULL,
    PRIMARY KEY (room_id, seq),
    UNIQUE KEY messages_client_id (room_id, author_id, client_id),
    KEY messages_created (created_at),
    CONSTRAINT messages_room_fk FOREIGN KEY (room_id) REFERENCES rooms(id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- MariaDB: the NO PAD twin of utf8mb4_bin, so that 'a' and 'a ' differ as they do on
-- SQLite and PostgreSQL (utf8mb4_bin ignores trailing spaces in comparisons). MySQL
-- skips these lines; keys there never end with a space anyway (names, emails and ids
-- are trimmed or refuse spaces before they reach the store).
/*M!100202 ALTER TABLE users CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin */;
/*M!100202 ALTER TABLE sessions CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin */;
/*M!100202 ALTER TABLE api_tokens CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin */;
/*M!100202 ALTER TABLE invites CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin */;
/*M!100202 ALTER TABLE settings CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin */;
/*M!100202 ALTER TABLE rooms CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin */;
/*M!100202 ALTER TABLE messages CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin */;
