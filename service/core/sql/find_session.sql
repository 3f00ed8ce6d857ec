-- find_session: the caller behind a panel session cookie (by its token's SHA-256), with its
-- key's plan and channels; nothing once the session expired or its key was revoked.
-- params: $1 token_hash bytea
-- plan: unique probe of sessions_pkey, api_keys_pkey, users_pkey, channels_owner_idx.
SELECT k.id AS key_id, k.user_id, k.admin, u.plan,
       coalesce((SELECT array_agg(c.id ORDER BY c.id) FROM pgcue.channels c WHERE c.owner_id = u.id),
                '{}'::text[]) AS channels,
       s.expires_at
FROM pgcue.sessions s
JOIN pgcue.api_keys k ON k.id = s.key_id
JOIN pgcue.users u ON u.id = k.user_id
WHERE s.token_hash = $1 AND s.expires_at > now() AND k.revoked_at IS NULL;
