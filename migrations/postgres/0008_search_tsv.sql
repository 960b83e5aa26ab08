-- The tsvector of search_text, computed once when a row is written instead of on every
-- search. With the GIN index on an expression, PostgreSQL had no statistics for the
-- tsvector, guessed every prefix's selectivity, walked messages newest first and
-- re-parsed the text of each row: a prefix with no hit in the viewer's rooms parsed the
-- whole table (3.2 s over 1M messages). A stored column has statistics and its recheck
-- reads the vector as stored (BENCHMARKS.md, "Search over 1 million messages").
-- Numbered 0008 so it never collides with the other backends' 0005-0007. IF NOT
-- EXISTS: an operator may run these statements by hand before upgrading a large
-- database (docs/DEPLOY.md, rolling restart).
ALTER TABLE messages ADD COLUMN IF NOT EXISTS search_tsv tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', search_text)) STORED;
DROP INDEX IF EXISTS messages_search;
CREATE INDEX IF NOT EXISTS messages_search_tsv ON messages USING GIN (search_tsv) WHERE search_text IS NOT NULL;
