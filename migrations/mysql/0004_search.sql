-- Full-text search over kept text messages. search_text is the text folded by the
-- server (lower case, accents dropped: domain::search::fold), NULL for anything that
-- is not a live text message (notices, actions, deleted messages). An InnoDB FULLTEXT
-- index, built without the stop-word list (so "the" or "about" can be searched).
-- InnoDB indexes words of at least innodb_ft_min_token_size characters (3 by
-- default): shorter words cannot be searched on this backend (docs/DEPLOY.md).
ALTER TABLE messages ADD COLUMN search_text MEDIUMTEXT;
SET SESSION innodb_ft_enable_stopword = OFF;
ALTER TABLE messages ADD FULLTEXT INDEX messages_search (search_text);
