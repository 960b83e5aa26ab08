-- Names and topics folded to lower case by Unicode's rules, for the directory and
-- room searches (`LIKE`): SQLite's lower() folds ASCII only, so "émile" never found
-- "Émile" there, and PostgreSQL's depends on the database's locale. Written by the
-- server (domain::names::search_fold); NULL until then (rows of an older version are
-- filled in at start-up, and the queries fall back to lower() meanwhile).
ALTER TABLE users ADD COLUMN name_fold TEXT NULL;
ALTER TABLE rooms ADD COLUMN topic_fold TEXT NULL;
