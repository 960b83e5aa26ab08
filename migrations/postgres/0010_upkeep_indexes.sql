-- Every node's upkeep (every 2 s) asks for the disabled accounts and the expired
-- sessions. Without these indexes each question walked the whole table: 10 ms and 4 ms
-- of a database connection at 30,000-40,000 accounts and sessions, every 2 s, growing
-- with every account.
CREATE INDEX users_disabled ON users (disabled);
CREATE INDEX sessions_expires ON sessions (expires_at);
