-- cancel_job: a queued job is cancelled at once; a running one gets cancel_requested and
-- its worker (told by a `cancel` notification and by its next heartbeat) ends it
-- `cancelled` at its next checkpoint.
-- params: $1 id uuid
-- returns one row: prev_state (NULL = no such job) and, when the cancel applied, the new
-- state. A finished job returns prev_state and a NULL state: the caller answers 409.
WITH prev AS (
    SELECT state FROM pgcue.jobs WHERE id = $1
), cancelled AS (
    UPDATE pgcue.jobs j
    SET cancel_requested = true,
        state = CASE WHEN j.state = 'queued' THEN 'cancelled' ELSE j.state END,
        completed_at = CASE WHEN j.state = 'queued' THEN now() END,
        error_message = CASE WHEN j.state = 'queued' THEN 'Job cancelled by user request'
                             ELSE j.error_message END,
        updated_at = now()
    WHERE j.id = $1 AND j.state IN ('queued', 'running')
    RETURNING j.id, j.channel_id, j.owner_id, j.state, j.attempts, j.error_message
), events AS (
    INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
    SELECT id, channel_id, owner_id, 'job:status',
           jsonb_build_object('state', state, 'attempt', attempts, 'cancelRequested', true,
                              'errorMessage', error_message)
    FROM cancelled
)
SELECT p.state AS prev_state, c.state,
       (SELECT count(pg_notify(n.channel, n.payload))
        FROM (SELECT 'pgcue_events' AS channel, '' AS payload
              UNION ALL
              SELECT 'pgcue_cancel', id::text FROM cancelled WHERE state = 'running') n
        WHERE EXISTS (SELECT 1 FROM cancelled)) AS notified
FROM prev p LEFT JOIN cancelled c ON true;
