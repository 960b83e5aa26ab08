-- TR39 skeletons of usernames and room names (computed by the server, lowercased):
-- a new name whose skeleton another name already has is refused as a look-alike.
-- Filled by the server for rows that have none (rows created before this migration).
ALTER TABLE users ADD COLUMN username_skel TEXT;
CREATE INDEX users_username_skel ON users (username_skel);
ALTER TABLE rooms ADD COLUMN name_skel TEXT;
CREATE INDEX rooms_name_skel ON rooms (name_skel);
