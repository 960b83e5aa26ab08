-- Moderation (issue 15): room roles, bans, mutes, read-only rooms and user blocks.
-- The owner is rooms.owner_id; a membership's role is 'member' or 'moderator'.
ALTER TABLE memberships ADD COLUMN role VARCHAR(16) NOT NULL DEFAULT 'member';
-- Only owner, moderators and the admin may send in a read-only room.
ALTER TABLE rooms ADD COLUMN read_only BIGINT NOT NULL DEFAULT 0;

-- Who may not (re)join a room. Outlives the membership it ended.
CREATE TABLE room_bans (
    room_id    BIGINT NOT NULL,
    user_id    BIGINT NOT NULL,
    banned_by  BIGINT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id),
    CONSTRAINT room_bans_room_fk FOREIGN KEY (room_id) REFERENCES rooms(id) ON DELETE CASCADE,
    CONSTRAINT room_bans_user_fk FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
) ENGINE = InnoDB;

-- Who may not post in a room until when (ms). Apart from memberships, so leaving and
-- rejoining does not lift a mute.
CREATE TABLE room_mutes (
    room_id    BIGINT NOT NULL,
    user_id    BIGINT NOT NULL,
    muted_until BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id),
    CONSTRAINT room_mutes_room_fk FOREIGN KEY (room_id) REFERENCES rooms(id) ON DELETE CASCADE,
    CONSTRAINT room_mutes_user_fk FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
) ENGINE = InnoDB;

-- user_id blocked blocked_id: no DM between them, in either direction.
CREATE TABLE user_blocks (
    user_id    BIGINT NOT NULL,
    blocked_id BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, blocked_id),
    KEY user_blocks_blocked (blocked_id),
    CONSTRAINT user_blocks_user_fk FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE,
    CONSTRAINT user_blocks_blocked_fk FOREIGN KEY (blocked_id) REFERENCES users(id) ON DELETE CASCADE
) ENGINE = InnoDB;
