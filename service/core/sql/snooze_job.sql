-- snooze_job: a running job waits $3 seconds for outside work (a provider's prediction)
-- without holding a worker: back to `queued` without charging the attempt (like
-- park_job), waiting for $4, runnable again at now + $3, with what its handler must know
-- to carry on recorded in handler_state ($5; NULL keeps what is there). Its next claim
-- polls once and snoozes it again, or finishes it.
-- params: $1 id uuid, $2 fence bigint, $3 seconds float8, $4 waiting_for text ('provider'),
--         $5 handler state text (a JSON object; NULL = unchanged)
-- returns one row while this worker holds the job (fenced), `snoozed` false when its
-- cancellation was requested (it stays running: the worker stops its outside work and
-- ends it `cancelled`); no row when the job is no longer held.
-- The `queued` event is written when the job starts to wait, not at every poll (the claim
-- of a job waiting on a provider writes no `running` event either: sql/claim_jobs.sql).
WITH held AS (
    SELECT j.id, j.waiting_for
    FROM pgcue.jobs j
    WHERE j.id = $1 AND j.fence = $2 AND j.state = 'running'
), snoozed AS (
    UPDATE pgcue.jobs j
    SET state = 'queued',
        attempts = j.attempts - 1,
        waiting_for = $4,
        run_at = now() + make_interval(secs => greatest($3::float8, 0)),
        handler_state = coalesce($5::text::jsonb, j.handler_state),
        updated_at = now(),
        locked_by = NULL,
        lease_expires_at = NULL
    FROM held h
    WHERE j.id = h.id AND j.fence = $2 AND j.state = 'running' AND NOT j.cancel_requested
    RETURNING j.id, j.channel_id, j.owner_id, j.attempts, j.max_attempts, j.waiting_for, j.run_at,
              h.waiting_for IS DISTINCT FROM j.waiting_for AS starts_waiting
), events AS (
    INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
    SELECT id, channel_id, owner_id, 'job:status',
           jsonb_build_object('state', 'queued', 'attempt', attempts, 'maxAttempts', max_attempts,
                              'waitingFor', waiting_for)
    FROM snoozed
    WHERE starts_waiting
)
SELECT h.id,
       EXISTS (SELECT 1 FROM snoozed) AS snoozed,
       (SELECT pg_notify('pgcue_events', '') FROM snoozed WHERE starts_waiting) IS NULL AS notified
FROM held h;
