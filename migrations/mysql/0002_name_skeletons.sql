-- TR39 skeletons of usernames and room names (computed by the server, lowercased):
-- a new name whose skeleton another name already has is refused as a look-alike.
-- Filled by the server for rows that have none (rows created before this migration).
ALTER TABLE users ADD COLUMN username_skel VARCHAR(255) NULL, ADD KEY users_username_skel (username_skel);
ALTER TABLE rooms ADD COLUMN name_skel VARCHAR(255) NULL, ADD KEY rooms_name_skel (name_skel);
