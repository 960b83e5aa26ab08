-- The admin console (issue 15): the audit log, password reset codes, when each
-- account was last seen, and archived rooms.

-- Every admin action, newest last. actor_id NULL: the CLI (an operator on the
-- machine). detail is a JSON object. Pruned after --audit-keep-days.
CREATE TABLE audit_log (
    id       BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    ts       BIGINT       NOT NULL,
    actor_id BIGINT,
    action   VARCHAR(64)  NOT NULL,
    target   VARCHAR(255) NOT NULL DEFAULT '',
    detail   TEXT         NOT NULL,
    KEY audit_log_ts (ts),
    CONSTRAINT audit_log_actor_fk FOREIGN KEY (actor_id) REFERENCES users(id) ON DELETE SET NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Single-use password reset codes an admin issued (only a SHA-256 of the code, as
-- for invites).
CREATE TABLE password_resets (
    code_hash  VARCHAR(128) NOT NULL PRIMARY KEY,
    user_id    BIGINT       NOT NULL,
    created_by BIGINT,
    created_at BIGINT       NOT NULL,
    expires_at BIGINT       NOT NULL,
    used_at    BIGINT,
    KEY password_resets_user (user_id),
    CONSTRAINT password_resets_user_fk FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE,
    CONSTRAINT password_resets_by_fk FOREIGN KEY (created_by) REFERENCES users(id) ON DELETE SET NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Written on sign-in and when a socket closes, not per message.
ALTER TABLE users ADD COLUMN last_seen BIGINT;

-- An archived room is read-only for everyone (the admin's decision).
ALTER TABLE rooms ADD COLUMN archived BIGINT NOT NULL DEFAULT 0;
