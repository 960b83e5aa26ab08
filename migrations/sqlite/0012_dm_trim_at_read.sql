-- SQLite trims a DM as its messages become deletable, at the send that moves the
-- retention's cut past them or at the read that marks them read, each over only the
-- seqs that step made deletable (one writer: the two never race). So it needs no
-- index of its own: `messages_author_seq`, which every message of every room paid for
-- at insert, goes (BENCHMARKS.md round 16).
--
-- Until now a read trimmed nothing: a DM's messages read since its last send are
-- deletable and still here. The incremental trims never look below their step, so
-- these go now, once (the index above makes it a range per author).
DELETE FROM messages
 WHERE room_id IN (SELECT id FROM rooms WHERE kind = 'dm' AND keep_messages IS NOT NULL)
   AND seq <= (SELECT r.last_seq - r.keep_messages FROM rooms r WHERE r.id = messages.room_id)
   AND seq <= (SELECT COALESCE(MIN(ms.last_read_seq), 0) FROM memberships ms
                WHERE ms.room_id = messages.room_id AND ms.user_id <> messages.author_id);
DROP INDEX messages_author_seq;
