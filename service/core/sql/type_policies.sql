-- type_policies: the limits a worker must claim under, for its types.
-- params: $1 names text[]
SELECT name, global_concurrency, channel_concurrency, rate_limit, rate_period_seconds, paused
FROM pgcue.job_types WHERE name = ANY($1::text[]);
