-- list_channels: every channel with its owner (an admin's channel picker in the panel).
-- params: $1 limit int
SELECT id, owner_id FROM pgcue.channels ORDER BY id LIMIT $1;
