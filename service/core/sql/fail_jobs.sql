-- fail_jobs: record failed attempts, many at once. Each goes back to `queued` after its
-- backoff while attempts remain and the error is not permanent, else ends `failed`;
-- a job whose cancellation was requested ends `cancelled` (this is also how a worker
-- acknowledges a cancel at a checkpoint). Every attempt's error is kept in `errors`.
-- params: $1 ids uuid[], $2 fences bigint[], $3 errors text[], $4 kinds text[]
--         ('error' | 'permanent' | 'timeout' | 'cancelled'), $5 retry delays float8[] (s)
-- Fenced by the claim's fence, like complete_jobs. A child that ends (failed or cancelled) wakes
-- its parked pipeline run, as in complete_jobs.
WITH failed AS (
    UPDATE pgcue.jobs j
    SET state = CASE
            WHEN j.cancel_requested THEN 'cancelled'
            WHEN f.kind <> 'permanent' AND j.attempts < j.max_attempts THEN 'queued'
            ELSE 'failed' END,
        run_at = CASE
            WHEN NOT j.cancel_requested AND f.kind <> 'permanent' AND j.attempts < j.max_attempts
            THEN now() + make_interval(secs => f.retry_in) ELSE j.run_at END,
        completed_at = CASE
            WHEN NOT j.cancel_requested AND f.kind <> 'permanent' AND j.attempts < j.max_attempts
            THEN NULL ELSE now() END,
        error_message = f.error,
        errors = j.errors || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempts, 'at', pgcue.iso_ms(now()), 'error', f.error, 'kind', f.kind)),
        updated_at = now(),
        locked_by = NULL,
        lease_expires_at = NULL
    FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::float8[])
         AS f(id, fence, error, kind, retry_in)
    WHERE j.id = f.id AND j.fence = f.fence AND j.state = 'running'
    RETURNING j.id, j.type, j.channel_id, j.owner_id, j.state, j.attempts, j.max_attempts,
              j.run_at, j.error_message, j.parent_id
), events AS (
    INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
    SELECT id, channel_id, owner_id, 'job:status',
           jsonb_build_object('state', state, 'attempt', attempts, 'maxAttempts', max_attempts,
                              'errorMessage', error_message,
                              'retryAt', CASE WHEN state = 'queued' THEN pgcue.iso_ms(run_at) END)
    FROM failed
), woken AS (
    UPDATE pgcue.jobs p
    SET run_at = now(), waiting_for = NULL, updated_at = now()
    WHERE p.id = ANY (ARRAY(SELECT parent_id FROM failed WHERE parent_id IS NOT NULL AND state <> 'queued'))
      AND p.state = 'queued' AND p.waiting_for = 'children'
    RETURNING p.type
)
SELECT d.id, d.state, d.run_at,
       (SELECT count(pg_notify(c.channel, c.payload))
        FROM (SELECT 'pgcue_events' AS channel, '' AS payload
              UNION
              SELECT 'pgcue_wake', type FROM woken) c) AS notified
FROM failed d;
