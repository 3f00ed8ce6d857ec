-- create_channels: give channels to a user; a channel already owned by someone else is
-- left alone and comes back with its real owner, so the caller can refuse.
-- params: $1 owner id text, $2 channel ids text[]
WITH new AS (
    INSERT INTO pgcue.channels (id, owner_id)
    SELECT DISTINCT unnest($2::text[]), $1
    ON CONFLICT (id) DO NOTHING
    RETURNING id, owner_id
)
SELECT id, owner_id FROM new
UNION ALL
SELECT c.id, c.owner_id FROM pgcue.channels c
WHERE c.id = ANY($2::text[]) AND c.id NOT IN (SELECT id FROM new);
