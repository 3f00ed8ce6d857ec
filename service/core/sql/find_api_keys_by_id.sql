-- find_api_keys_by_id: the callers behind some keys as they stand now (the API re-checks
-- the keys of its open SSE streams with this); a revoked or deleted key has no row.
-- params: $1 key ids bigint[]
-- plan: api_keys_pkey probes, users_pkey, channels_owner_idx.
SELECT k.id AS key_id, k.user_id, k.admin, u.plan,
       coalesce((SELECT array_agg(c.id ORDER BY c.id) FROM pgcue.channels c WHERE c.owner_id = u.id),
                '{}'::text[]) AS channels
FROM pgcue.api_keys k
JOIN pgcue.users u ON u.id = k.user_id
WHERE k.id = ANY($1::bigint[]) AND k.revoked_at IS NULL;
