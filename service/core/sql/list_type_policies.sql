-- list_type_policies: every type's pause flag and limits with what runs and waits against
-- them (the pgcue.type_policies view; /api/stats).
-- plan: job_types is small; the per-type counts probe jobs_running_idx and jobs_claim_idx.
SELECT type, paused, global_concurrency, channel_concurrency, rate_limit, rate_period_seconds, running, queued
FROM pgcue.type_policies;
