-- A read now trims a DM too: the other member's messages that its marker passes, up to
-- the retention's cut (`SqlStore::mark_read`). Until now only a send trimmed here, so
-- what reads had made deletable since a DM's last message is still kept: it goes now,
-- once (the same rule as the trims: past the last N, and read by the other member).
DELETE m FROM messages m
  JOIN rooms r ON r.id = m.room_id
 WHERE r.kind = 'dm' AND r.keep_messages IS NOT NULL
   AND m.seq <= r.last_seq - r.keep_messages
   AND m.seq <= (SELECT COALESCE(MIN(ms.last_read_seq), 0) FROM memberships ms
                  WHERE ms.room_id = m.room_id AND ms.user_id <> m.author_id);
