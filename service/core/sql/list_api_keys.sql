-- list_api_keys: an operator's view of the keys (never the tokens, which are not stored).
-- params: $1 user id text (NULL = every user), $2 include revoked keys boolean
SELECT k.id, k.user_id, k.admin, k.label, k.created_at, k.revoked_at, u.plan,
       coalesce((SELECT array_agg(c.id ORDER BY c.id) FROM pgcue.channels c WHERE c.owner_id = u.id),
                '{}'::text[]) AS channels
FROM pgcue.api_keys k
JOIN pgcue.users u ON u.id = k.user_id
WHERE ($1::text IS NULL OR k.user_id = $1) AND ($2 OR k.revoked_at IS NULL)
ORDER BY k.id;
