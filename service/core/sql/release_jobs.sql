-- release_jobs: give running jobs back to the queue without charging the attempt
-- (a worker shutting down after its grace period; a job claimed ahead that did not get a
-- handler slot in time, workers/runtime/worker.py). A job whose cancellation was
-- requested ends `cancelled` instead. Fenced by the claim's fence (which stays: the next
-- claim takes a new one).
-- params: $1 ids uuid[], $2 fences bigint[], $3 reason text (in the `queued` event)
WITH released AS (
    UPDATE pgcue.jobs j
    SET state = CASE WHEN j.cancel_requested THEN 'cancelled' ELSE 'queued' END,
        attempts = CASE WHEN j.cancel_requested THEN j.attempts ELSE j.attempts - 1 END,
        completed_at = CASE WHEN j.cancel_requested THEN now() END,
        error_message = CASE WHEN j.cancel_requested THEN 'Job cancelled by user request' END,
        run_at = now(),
        updated_at = now(),
        locked_by = NULL,
        lease_expires_at = NULL
    FROM unnest($1::uuid[], $2::bigint[]) AS r(id, fence)
    WHERE j.id = r.id AND j.fence = r.fence AND j.state = 'running'
    RETURNING j.id, j.type, j.channel_id, j.owner_id, j.state, j.attempts
), events AS (
    INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
    SELECT id, channel_id, owner_id, 'job:status',
           jsonb_build_object('state', state, 'attempt', attempts, 'reason', $3::text)
    FROM released
)
SELECT r.id, r.state,
       (SELECT count(pg_notify(c.channel, c.payload))
        FROM (SELECT 'pgcue_events' AS channel, '' AS payload
              UNION
              SELECT 'pgcue_wake', type FROM released WHERE state = 'queued') c) AS notified
FROM released r;
