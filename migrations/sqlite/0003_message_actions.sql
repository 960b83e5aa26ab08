-- Message actions (edit, delete, reactions), replies, mentions and per-room
-- notification levels. An action is itself a kept event (kind 'edit', 'delete',
-- 'react', 'unreact') with its own seq, naming the message it acts on in
-- target_seq; its effect is applied to the target row in the same transaction.
ALTER TABLE messages ADD COLUMN target_seq BIGINT;
ALTER TABLE messages ADD COLUMN reply_to BIGINT;
ALTER TABLE messages ADD COLUMN edited_at BIGINT;
ALTER TABLE messages ADD COLUMN deleted BIGINT NOT NULL DEFAULT 0;

-- Who reacted with what; gone with the message (retention or delete).
CREATE TABLE reactions (
    room_id    BIGINT      NOT NULL,
    seq        BIGINT      NOT NULL,
    user_id    BIGINT      NOT NULL,
    emoji      VARCHAR(64) NOT NULL,
    given_seq  BIGINT      NOT NULL,
    PRIMARY KEY (room_id, seq, user_id, emoji),
    FOREIGN KEY (room_id, seq) REFERENCES messages(room_id, seq) ON DELETE CASCADE
);

-- Who a text message mentions (by id, so renames keep working).
CREATE TABLE mentions (
    room_id BIGINT NOT NULL,
    seq     BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    PRIMARY KEY (room_id, seq, user_id),
    FOREIGN KEY (room_id, seq) REFERENCES messages(room_id, seq) ON DELETE CASCADE
);
CREATE INDEX mentions_user ON mentions (user_id, room_id, seq);

-- 'all', 'mentions' or 'muted'.
ALTER TABLE memberships ADD COLUMN notify VARCHAR(16) NOT NULL DEFAULT 'all';
