-- Full-text search over kept text messages. search_text is the text folded by the
-- server (lower case, accents dropped: domain::search::fold), NULL for anything that
-- is not a live text message (notices, actions, deleted messages). A GIN index over
-- its 'simple' tsvector (no stemming, no stop words: the folding is the server's, the
-- same on every database) is kept by PostgreSQL in the writing transaction.
ALTER TABLE messages ADD COLUMN search_text TEXT;
CREATE INDEX messages_search ON messages USING GIN (to_tsvector('simple', search_text)) WHERE search_text IS NOT NULL;
