-- rescue_jobs: running jobs whose lease expired (their worker died or stalled) go back
-- to `queued` at once, or end `failed` when their attempts are spent (`cancelled` when a
-- cancel was requested). The lost attempt is recorded in `errors`.
-- params: $1 limit int
-- plan: jobs_running_idx (partial, running rows only: as many as the fleet's slots),
-- filter on lease_expires_at. Run by the one maintenance leader. A child that ends here
-- (failed or cancelled) wakes its parked pipeline run, as in complete_jobs.
WITH expired AS (
    SELECT id FROM pgcue.jobs
    WHERE state = 'running' AND lease_expires_at < now()
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), rescued AS (
    UPDATE pgcue.jobs j
    SET state = CASE WHEN j.cancel_requested THEN 'cancelled'
                     WHEN j.attempts < j.max_attempts THEN 'queued'
                     ELSE 'failed' END,
        completed_at = CASE WHEN j.cancel_requested OR j.attempts >= j.max_attempts
                            THEN now() END,
        run_at = now(),
        error_message = 'lease expired: worker ' || j.locked_by || ' stopped heartbeating',
        errors = j.errors || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempts, 'at', pgcue.iso_ms(now()), 'kind', 'rescued',
            'error', 'lease expired: worker ' || j.locked_by || ' stopped heartbeating')),
        updated_at = now(),
        locked_by = NULL,
        lease_expires_at = NULL
    FROM expired
    WHERE j.id = expired.id
    RETURNING j.id, j.type, j.channel_id, j.owner_id, j.state, j.attempts, j.max_attempts,
              j.error_message, j.parent_id
), events AS (
    INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
    SELECT id, channel_id, owner_id, 'job:status',
           jsonb_build_object('state', state, 'attempt', attempts, 'maxAttempts', max_attempts,
                              'errorMessage', error_message, 'reason', 'rescued')
    FROM rescued
), woken AS (
    UPDATE pgcue.jobs p
    SET run_at = now(), waiting_for = NULL, updated_at = now()
    WHERE p.id = ANY (ARRAY(SELECT parent_id FROM rescued WHERE parent_id IS NOT NULL AND state <> 'queued'))
      AND p.state = 'queued' AND p.waiting_for = 'children'
    RETURNING p.type
)
SELECT r.id, r.type, r.state,
       (SELECT count(pg_notify(c.channel, c.payload))
        FROM (SELECT 'pgcue_events' AS channel, '' AS payload
              UNION
              SELECT 'pgcue_wake', type FROM rescued WHERE state = 'queued'
              UNION
              SELECT 'pgcue_wake', type FROM woken) c) AS notified
FROM rescued r;
