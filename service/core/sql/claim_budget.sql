-- claim_budget: how many jobs of type $1 may start now, at most $2, under the type's
-- fleet-wide concurrency and rate limit. Run after lock_claims in the same transaction,
-- so the counts include every claim committed before ours.
-- params: $1 type text, $2 wanted int
-- plan: jobs_running_idx (running rows of the type) and rate_starts_type_idx.
SELECT greatest(0, least(
           $2,
           coalesce(t.global_concurrency - (
               SELECT count(*) FROM pgcue.jobs WHERE state = 'running' AND type = $1), $2),
           coalesce(t.rate_limit - (
               SELECT count(*) FROM pgcue.rate_starts
               WHERE type = $1 AND started_at > now() - make_interval(secs => t.rate_period_seconds)), $2)
       ))::int AS budget,
       t.channel_concurrency,
       t.rate_limit IS NOT NULL AS rate_limited
FROM pgcue.job_types t
WHERE t.name = $1 AND NOT t.paused;
