-- find_channel_owner: who owns a channel (no row = not registered).
-- params: $1 channel id text
SELECT owner_id FROM pgcue.channels WHERE id = $1;
