-- find_api_key: the caller behind a bearer token (by its SHA-256), with its plan and channels.
-- params: $1 token_hash bytea
-- plan: unique probe of api_keys_token_hash_key, users_pkey, channels_owner_idx.
SELECT k.id AS key_id, k.user_id, k.admin, u.plan,
       coalesce((SELECT array_agg(c.id ORDER BY c.id) FROM pgcue.channels c WHERE c.owner_id = u.id),
                '{}'::text[]) AS channels
FROM pgcue.api_keys k
JOIN pgcue.users u ON u.id = k.user_id
WHERE k.token_hash = $1 AND k.revoked_at IS NULL;
