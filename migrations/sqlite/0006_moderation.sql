-- Moderation (issue 15): room roles, bans, mutes, read-only rooms and user blocks.
-- The owner is rooms.owner_id; a membership's role is 'member' or 'moderator'.
ALTER TABLE memberships ADD COLUMN role VARCHAR(16) NOT NULL DEFAULT 'member';
-- Only owner, moderators and the admin may send in a read-only room.
ALTER TABLE rooms ADD COLUMN read_only BIGINT NOT NULL DEFAULT 0;

-- Who may not (re)join a room. Outlives the membership it ended.
CREATE TABLE room_bans (
    room_id    BIGINT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    user_id    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    banned_by  BIGINT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

-- Who may not post in a room until when (ms). Apart from memberships, so leaving and
-- rejoining does not lift a mute.
CREATE TABLE room_mutes (
    room_id    BIGINT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    user_id    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    muted_until BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

-- user_id blocked blocked_id: no DM between them, in either direction.
CREATE TABLE user_blocks (
    user_id    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    blocked_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, blocked_id)
);
CREATE INDEX user_blocks_blocked ON user_blocks(blocked_id);
