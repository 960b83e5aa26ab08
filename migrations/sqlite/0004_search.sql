-- Full-text search over kept text messages. search_text is the text folded by the
-- server (lower case, accents dropped: domain::search::fold), NULL for anything that
-- is not a live text message (notices, actions, deleted messages). An external-
-- content FTS5 index follows it through triggers, in the same transaction as the
-- write: a deleted, edited or trimmed message is never found under its old words.
ALTER TABLE messages ADD COLUMN search_text TEXT;

CREATE VIRTUAL TABLE messages_fts USING fts5(
    search_text,
    content = 'messages',
    content_rowid = 'rowid',
    tokenize = 'unicode61 remove_diacritics 0'
);

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages WHEN new.search_text IS NOT NULL BEGIN
    INSERT INTO messages_fts (rowid, search_text) VALUES (new.rowid, new.search_text);
END;

CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages WHEN old.search_text IS NOT NULL BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, search_text) VALUES ('delete', old.rowid, old.search_text);
END;

CREATE TRIGGER messages_fts_update AFTER UPDATE OF search_text ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, search_text)
        SELECT 'delete', old.rowid, old.search_text WHERE old.search_text IS NOT NULL;
    INSERT INTO messages_fts (rowid, search_text)
        SELECT new.rowid, new.search_text WHERE new.search_text IS NOT NULL;
END;
