-- pgcue 0003: inspection from psql, and the people's actions (cancel, retry, delete, purge)
-- as functions, so psql and the API go through the same statements.
--
-- service/sql/cancel_job.sql, retry_job.sql and delete_jobs.sql are thin calls of the
-- functions below: one implementation of each rule, its event row and its notifications.
-- The functions name everything with its schema and pin search_path, so they behave the
-- same whatever the caller's search_path is.
--
-- From psql:   SET search_path = pgcue, public;   then   TABLE queue_overview;
-- (docs/operating.md has the recipes.)

-- --- views ----------------------------------------------------------------------------

-- One row per job type: how many jobs in each state, how many are runnable now versus
-- scheduled for later, and how long the oldest runnable one has waited.
CREATE VIEW pgcue.queue_overview AS
SELECT t.name AS type,
       count(j.id) FILTER (WHERE j.state = 'queued' AND j.run_at <= now()) AS runnable,
       count(j.id) FILTER (WHERE j.state = 'queued' AND j.run_at > now()) AS scheduled,
       count(j.id) FILTER (WHERE j.state = 'running') AS running,
       count(j.id) FILTER (WHERE j.state = 'completed') AS completed,
       count(j.id) FILTER (WHERE j.state = 'failed') AS failed,
       count(j.id) FILTER (WHERE j.state = 'cancelled') AS cancelled,
       date_trunc('second', now() - min(j.run_at) FILTER (WHERE j.state = 'queued' AND j.run_at <= now()))
           AS oldest_runnable_age,
       t.concurrency AS concurrency_per_worker,
       (SELECT count(*) FROM pgcue.workers w
        WHERE t.name = ANY (w.types) AND w.stopped_at IS NULL) AS workers
FROM pgcue.job_types t
LEFT JOIN pgcue.jobs j ON j.type = t.name
GROUP BY t.name, t.concurrency;
COMMENT ON VIEW pgcue.queue_overview IS
    'Per job type: jobs by state (queued split into runnable and scheduled), oldest runnable age, workers not stopped.';

-- Jobs running now: who holds them and how long their lease has left. A negative
-- lease_left means the worker stopped heartbeating: see stuck_jobs.
CREATE VIEW pgcue.running_jobs AS
SELECT j.id, j.type, j.channel_id, j.attempts AS attempt, j.max_attempts,
       j.locked_by AS worker, w.hostname, w.pid,
       date_trunc('second', j.started_at) AS started_at,
       date_trunc('second', now() - j.started_at) AS running_for,
       date_trunc('second', j.lease_expires_at - now()) AS lease_left,
       j.progress, j.progress_message, j.stage, j.cancel_requested
FROM pgcue.jobs j
LEFT JOIN pgcue.workers w ON w.id = j.locked_by
WHERE j.state = 'running'
ORDER BY j.started_at;
COMMENT ON VIEW pgcue.running_jobs IS 'Running jobs with their worker (host, pid) and the time left on their lease.';

-- Running jobs whose lease expired: their worker died or stalled. The maintenance leader
-- rescues them within PGCUE_RESCUE_INTERVAL; rows that stay here mean no leader runs.
CREATE VIEW pgcue.stuck_jobs AS
SELECT j.id, j.type, j.channel_id, j.attempts AS attempt, j.max_attempts,
       j.locked_by AS worker, w.hostname, w.pid,
       date_trunc('second', now() - j.lease_expires_at) AS lease_expired_for,
       date_trunc('second', now() - w.last_seen_at) AS worker_last_seen,
       w.stopped_at AS worker_stopped_at
FROM pgcue.jobs j
LEFT JOIN pgcue.workers w ON w.id = j.locked_by
WHERE j.state = 'running' AND j.lease_expires_at < now()
ORDER BY j.lease_expires_at;
COMMENT ON VIEW pgcue.stuck_jobs IS 'Running jobs whose lease expired (worker dead or stalled), oldest first.';

-- Every failed attempt, newest first, with its error and what became of the job
-- (state `queued` = it will retry; `failed` = attempts spent or a permanent error).
CREATE VIEW pgcue.recent_failures AS
SELECT j.id, j.type, j.channel_id, (e.value ->> 'attempt')::int AS attempt, j.max_attempts,
       (e.value ->> 'at')::timestamptz AS failed_at,
       e.value ->> 'kind' AS kind,
       e.value ->> 'error' AS error,
       j.state AS job_state
FROM pgcue.jobs j
CROSS JOIN LATERAL jsonb_array_elements(j.errors) AS e(value)
WHERE j.errors <> '[]'::jsonb
ORDER BY failed_at DESC;
COMMENT ON VIEW pgcue.recent_failures IS
    'One row per failed attempt (error, kind, when) with the job''s current state, newest first.';

-- --- functions --------------------------------------------------------------------------

-- A job's event history, in the order it happened (what SSE replays).
CREATE FUNCTION pgcue.job_history(job_id uuid)
RETURNS TABLE (event_id bigint, at timestamptz, kind text, state text, data jsonb)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.id, e.created_at, e.kind, e.data ->> 'state', e.data
    FROM pgcue.job_events e
    WHERE e.job_id = $1
    ORDER BY e.id
$$;
COMMENT ON FUNCTION pgcue.job_history(uuid) IS 'Every event of one job, oldest first.';

-- Cancel: a queued job is cancelled at once; a running one gets cancel_requested and its
-- worker (told by a `cancel` notification and by its next heartbeat) ends it `cancelled`
-- at its next checkpoint. Returns one row: prev_state (no row = no such job) and, when
-- the cancel applied, the new state (NULL = not allowed: the job had finished).
-- The API's POST /api/jobs/{id}/cancel runs exactly this (service/sql/cancel_job.sql).
CREATE FUNCTION pgcue.cancel_job(job_id uuid)
RETURNS TABLE (prev_state text, state text, notified bigint)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
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
FROM prev p LEFT JOIN cancelled c ON true
$$;
COMMENT ON FUNCTION pgcue.cancel_job(uuid) IS
    'Cancel a queued job, or ask a running one to stop; same rules, event and notifications as the API.';

-- Retry: a failed or cancelled job goes back to `queued` now with a fresh set of
-- attempts; its error history is kept. Returns like cancel_job.
CREATE FUNCTION pgcue.retry_job(job_id uuid)
RETURNS TABLE (prev_state text, state text, notified bigint)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
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
FROM prev p LEFT JOIN retried r ON true
$$;
COMMENT ON FUNCTION pgcue.retry_job(uuid) IS
    'Put a failed or cancelled job back in the queue with fresh attempts; same rules as the API.';

-- Delete finished jobs (and their events) by id; queued and running jobs stay.
-- Returns the ids deleted.
CREATE FUNCTION pgcue.delete_jobs(job_ids uuid[])
RETURNS TABLE (id uuid)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
WITH gone AS (
    DELETE FROM pgcue.jobs
    WHERE id = ANY ($1) AND state IN ('completed', 'failed', 'cancelled')
    RETURNING id
), events AS (
    DELETE FROM pgcue.job_events e USING gone WHERE e.job_id = gone.id
)
SELECT gone.id FROM gone
$$;
COMMENT ON FUNCTION pgcue.delete_jobs(uuid[]) IS 'Delete finished jobs and their events by id (the API''s DELETE).';

-- Purge: delete finished jobs (and their events) older than `older_than`, optionally of
-- one type and/or in one finished state, in batches of 10 000 so that a large purge does
-- not hold one huge transaction's locks. Same rule as delete_jobs: finished jobs only.
-- Returns how many jobs it deleted.
CREATE FUNCTION pgcue.purge_jobs(older_than interval DEFAULT '0',
                                 job_type text DEFAULT NULL,
                                 job_state text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    total bigint := 0;
    batch bigint;
BEGIN
    IF job_state IS NOT NULL AND job_state NOT IN ('completed', 'failed', 'cancelled') THEN
        RAISE EXCEPTION 'pgcue.purge_jobs: job_state must be completed, failed or cancelled, not %', job_state
            USING HINT = 'queued and running jobs are cancelled, not purged';
    END IF;
    LOOP
        SELECT count(*) INTO batch
        FROM pgcue.delete_jobs(ARRAY(
            SELECT j.id FROM pgcue.jobs j
            WHERE j.completed_at < now() - older_than
              AND (job_type IS NULL OR j.type = job_type)
              AND (job_state IS NULL OR j.state = job_state)
            ORDER BY j.completed_at
            LIMIT 10000
            FOR UPDATE SKIP LOCKED));
        total := total + batch;
        EXIT WHEN batch < 10000;
    END LOOP;
    RETURN total;
END
$$;
COMMENT ON FUNCTION pgcue.purge_jobs(interval, text, text) IS
    'Delete finished jobs older than an age (optionally one type / state); returns how many.';
