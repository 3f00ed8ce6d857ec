-- list_type_policies: every type's pause flag and limits, with what runs and waits against
-- them in some channels (/api/stats: an admin sees the fleet, a user its own channels).
-- params: $1 channel ids text[] (NULL = every channel)
-- plan: job_types is small; per type, the running count probes jobs_running_idx
-- (type, channel_id) and the queued count jobs_claim_idx (type, channel_id, ...), both
-- partial indexes of unfinished rows only, so the cost follows the backlog, not history.
SELECT t.name AS type, t.paused, t.global_concurrency, t.channel_concurrency, t.rate_limit,
       t.rate_period_seconds,
       (SELECT count(*) FROM pgcue.jobs j
        WHERE j.state = 'running' AND j.type = t.name
          AND ($1::text[] IS NULL OR j.channel_id = ANY($1::text[]))) AS running,
       (SELECT count(*) FROM pgcue.jobs j
        WHERE j.state = 'queued' AND j.type = t.name
          AND ($1::text[] IS NULL OR j.channel_id = ANY($1::text[]))) AS queued
FROM pgcue.job_types t
ORDER BY t.name;
