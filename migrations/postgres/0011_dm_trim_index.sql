-- A DM's trim deletes, per author, the messages its other member has read and the
-- retention lets go. With only (room_id, seq) to go by, it walked every message held
-- for a recipient who had not read them, on every send: O(held) per message, 2 ms of
-- the one SQLite writer and 26 ms of PostgreSQL's CPU a send at ~4,000 held
-- (BENCHMARKS.md, round 15). Per author, each trim is an index range of exactly the
-- rows it deletes.
CREATE INDEX messages_author_seq ON messages (room_id, author_id, seq);
