-- upsert_user: create a user, or change its plan when $2 is not NULL.
-- params: $1 user id text, $2 plan text (NULL = keep, 'free' for a new user)
INSERT INTO pgcue.users (id, plan) VALUES ($1, coalesce($2, 'free'))
ON CONFLICT (id) DO UPDATE SET plan = coalesce($2, pgcue.users.plan)
RETURNING id, plan;
