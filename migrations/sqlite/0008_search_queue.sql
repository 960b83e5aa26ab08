-- The search index is brought up to date in batches instead of inside every send's
-- transaction (issue 16). FTS5 writes a new index segment at every commit, and a
-- commit under chat load carries one or two messages: indexing 100-byte texts cost
-- about a third of the writer's time (BENCHMARKS.md). Now a send, edit or trim only
-- queues the change in two plain tables, and `SqlStore::index_search` applies the
-- queue in transactions of many rows: every 250 ms from the server's upkeep, and
-- before every search, so a search never misses a message that was acknowledged
-- and never finds one that was edited away, deleted or trimmed.
--
-- fts_todo: rows to index (their current search_text is read when indexed).
-- fts_dead: indexed texts to take out, in order (`id`); an external-content FTS5
-- index needs the old text to remove it; AUTOINCREMENT keeps ids rising when the
-- table empties, so "everything queued before now" is an id range. A row still
-- waiting in fts_todo was never indexed, so removing or changing it only leaves the
-- queue.
-- Order matters when a rowid is reused (the newest row deleted, then a new one):
-- the indexer applies every queued removal before any new row.
CREATE TABLE fts_todo (row INTEGER PRIMARY KEY);
CREATE TABLE fts_dead (id INTEGER PRIMARY KEY AUTOINCREMENT, row BIGINT NOT NULL, text TEXT NOT NULL);

DROP TRIGGER messages_fts_insert;
DROP TRIGGER messages_fts_delete;
DROP TRIGGER messages_fts_update;

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages WHEN new.search_text IS NOT NULL BEGIN
    INSERT OR IGNORE INTO fts_todo (row) VALUES (new.rowid);
END;

CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages WHEN old.search_text IS NOT NULL BEGIN
    INSERT INTO fts_dead (row, text)
        SELECT old.rowid, old.search_text WHERE NOT EXISTS (SELECT 1 FROM fts_todo WHERE row = old.rowid);
    DELETE FROM fts_todo WHERE row = old.rowid;
END;

CREATE TRIGGER messages_fts_update AFTER UPDATE OF search_text ON messages BEGIN
    INSERT INTO fts_dead (row, text)
        SELECT old.rowid, old.search_text
         WHERE old.search_text IS NOT NULL AND NOT EXISTS (SELECT 1 FROM fts_todo WHERE row = old.rowid);
    INSERT OR IGNORE INTO fts_todo (row) SELECT new.rowid WHERE new.search_text IS NOT NULL;
END;
