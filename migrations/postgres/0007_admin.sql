-- The admin console (issue 15): the audit log, password reset codes, when each
-- account was last seen, and archived rooms.

-- Every admin action, newest last. actor_id NULL: the CLI (an operator on the
-- machine). detail is a JSON object. Pruned after --audit-keep-days.
CREATE TABLE audit_log (
    id       BIGSERIAL PRIMARY KEY,
    ts       BIGINT NOT NULL,
    actor_id BIGINT REFERENCES users(id) ON DELETE SET NULL,
    action   TEXT   NOT NULL,
    target   TEXT   NOT NULL DEFAULT '',
    detail   TEXT   NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_ts ON audit_log(ts);

-- Single-use password reset codes an admin issued (only a SHA-256 of the code, as
-- for invites).
CREATE TABLE password_resets (
    code_hash  TEXT   PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_by BIGINT REFERENCES users(id) ON DELETE SET NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX password_resets_user ON password_resets(user_id);

-- Written on sign-in and when a socket closes, not per message.
ALTER TABLE users ADD COLUMN last_seen BIGINT;

-- An archived room is read-only for everyone (the admin's decision).
ALTER TABLE rooms ADD COLUMN archived BIGINT NOT NULL DEFAULT 0;
