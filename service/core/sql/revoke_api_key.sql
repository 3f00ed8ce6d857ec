-- revoke_api_key: a key stops working now (requests with it are 401; the API ends its open
-- streams within seconds). Revoking twice changes nothing.
-- params: $1 key id bigint
-- returns: the key (no row: no such key), and whether it was revoked already.
WITH before AS (
    SELECT id, revoked_at IS NOT NULL AS was_revoked FROM pgcue.api_keys WHERE id = $1 FOR UPDATE
), revoked AS (
    UPDATE pgcue.api_keys k SET revoked_at = now()
    FROM before b
    WHERE k.id = b.id AND NOT b.was_revoked
)
SELECT k.id, k.user_id, k.admin, k.label, b.was_revoked
FROM pgcue.api_keys k JOIN before b ON b.id = k.id;
