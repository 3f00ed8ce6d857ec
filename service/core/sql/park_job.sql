-- park_job: a pipeline run waits without holding a worker: back to `queued` without
-- charging the attempt (like release_jobs), marked with what it waits for, runnable again
-- at $4 seconds from now (a safety net; a child's completion or a person's decision wakes
-- it sooner) or never on its own (NULL: 'infinity', a person must resume it).
-- Run in the orchestrator's transaction, after the stage change and the child's enqueue:
-- the child cannot finish before the run is parked, so its wake-up is never lost.
-- params: $1 id uuid, $2 fence bigint, $3 waiting_for text ('children' | 'approval'),
--         $4 recheck seconds float8 (NULL = until woken)
-- Fenced by the claim's fence; a run whose cancellation was requested is not parked (no row).
WITH parked AS (
    UPDATE pgcue.jobs j
    SET state = 'queued',
        attempts = j.attempts - 1,
        waiting_for = $3,
        parked = true,  -- its later claims keep started_at (sql/claim_jobs.sql)
        run_at = CASE WHEN $4::float8 IS NULL THEN 'infinity'::timestamptz
                      ELSE now() + make_interval(secs => $4::float8) END,
        updated_at = now(),
        locked_by = NULL,
        lease_expires_at = NULL
    WHERE j.id = $1 AND j.fence = $2 AND j.state = 'running' AND NOT j.cancel_requested
    RETURNING j.id, j.channel_id, j.owner_id, j.attempts, j.max_attempts, j.waiting_for
), events AS (
    INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
    SELECT id, channel_id, owner_id, 'job:status',
           jsonb_build_object('state', 'queued', 'attempt', attempts, 'maxAttempts', max_attempts,
                              'waitingFor', waiting_for)
    FROM parked
)
SELECT p.id, (SELECT pg_notify('pgcue_events', '')) IS NULL AS notified
FROM parked p;
