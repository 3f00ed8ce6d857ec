-- retry_job: a person retries a failed or cancelled job: back to `queued` now, with a
-- fresh set of attempts. The error history is kept.
-- params: $1 id uuid
-- returns one row: prev_state (NULL = no such job) and the new state (NULL = not allowed).
WITH prev AS (
    SELECT state FROM pgcue.jobs WHERE id = $1
), retried AS (
    UPDATE pgcue.jobs j
    SET state = 'queued', attempts = 0, cancel_requested = false, run_at = now(),
        completed_at = NULL, error_message = NULL, result = NULL, result_path = NULL,
        progress = 0, progress_message = NULL, updated_at = now()
    WHERE j.id = $1 AND j.state IN ('failed', 'cancelled')
    RETURNING j.id, j.type, j.channel_id, j.owner_id, j.state, j.max_attempts
), events AS (
    INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
    SELECT id, channel_id, owner_id, 'job:status',
           jsonb_build_object('state', 'queued', 'attempt', 0, 'maxAttempts', max_attempts,
                              'reason', 'retried')
    FROM retried
)
SELECT p.state AS prev_state, r.state,
       (SELECT count(pg_notify(n.channel, n.payload))
        FROM (SELECT 'pgcue_events' AS channel, '' AS payload
              UNION ALL
              SELECT 'pgcue_wake', type FROM retried) n
        WHERE EXISTS (SELECT 1 FROM retried)) AS notified
FROM prev p LEFT JOIN retried r ON true;
