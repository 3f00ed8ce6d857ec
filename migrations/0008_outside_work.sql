-- pgcue 0008: jobs whose work runs elsewhere (a provider's prediction: the `generate` type).
--
-- Such a job starts the outside work, records what it needs to find it again in
-- `handler_state` (the prediction's id, the idempotency key it was created with), and then
-- waits for it without holding a worker: it is parked, `queued` with
-- waiting_for = 'provider' and a run_at at its next poll, without charging its attempt
-- (sql/snooze_job.sql). Each claim polls once and parks it again, or finishes it. A
-- worker that dies mid-poll loses nothing: the rescued job's next claim finds the same
-- handler_state and polls the same prediction. docs/job-types.md tells the whole story.

-- --- what the handler recorded --------------------------------------------------------------
ALTER TABLE pgcue.jobs ADD COLUMN handler_state jsonb
    CONSTRAINT jobs_handler_state_object CHECK (handler_state IS NULL OR jsonb_typeof(handler_state) = 'object');
COMMENT ON COLUMN pgcue.jobs.handler_state IS
    'Outside work the job''s handler started (a provider''s prediction id, its idempotency key), kept across parks, retries and rescues; NULL: none. A person''s retry clears it.';

-- Outside work in flight per (type, channel): what a type's channel_concurrency counts for
-- such jobs (sql/record_outside_work.sql), since a parked job is not `running`.
CREATE INDEX jobs_outside_work_idx ON pgcue.jobs (type, channel_id)
    WHERE handler_state IS NOT NULL AND state IN ('queued', 'running');

-- --- a third thing to wait for -------------------------------------------------------------
-- The new list contains the old one, so no row can fail it.
ALTER TABLE pgcue.jobs DROP CONSTRAINT jobs_waiting_for_valid;
ALTER TABLE pgcue.jobs ADD CONSTRAINT jobs_waiting_for_valid
    CHECK (waiting_for IN ('children', 'approval', 'provider'));
COMMENT ON COLUMN pgcue.jobs.waiting_for IS
    'A parked job: children (a pipeline run''s stage job runs), approval (a person must decide) or provider (outside work, polled at run_at). Meaningful while queued.';

-- --- cancel (0005), for jobs with outside work -----------------------------------------------
-- A queued job with outside work in flight (handler_state set: a prediction runs at the
-- provider) is not cancelled at once, since nobody would then stop that work: like a
-- running job it gets cancel_requested, and it is made runnable now and its type's
-- workers woken, so a worker claims it, cancels the prediction at the provider and ends
-- the job `cancelled`. Everything else is as in 0005.
CREATE OR REPLACE FUNCTION pgcue.cancel_job(job_id uuid)
RETURNS TABLE (prev_state text, state text, notified bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    target  uuid := $1;
    before  text;
    after   text;
    parent  uuid;
    chan    text;
    owner   text;
    jtype   text;
    sent    bigint := 0;
BEGIN
    SELECT j.state INTO before FROM pgcue.jobs j WHERE j.id = target;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    WITH cancelled AS (
        UPDATE pgcue.jobs j
        SET cancel_requested = true,
            state = CASE WHEN j.state = 'queued' AND j.handler_state IS NULL THEN 'cancelled' ELSE j.state END,
            completed_at = CASE WHEN j.state = 'queued' AND j.handler_state IS NULL THEN now() END,
            error_message = CASE WHEN j.state = 'queued' AND j.handler_state IS NULL
                                 THEN 'Job cancelled by user request' ELSE j.error_message END,
            run_at = CASE WHEN j.state = 'queued' AND j.handler_state IS NOT NULL
                          THEN least(j.run_at, now()) ELSE j.run_at END,
            updated_at = now()
        WHERE j.id = target AND j.state IN ('queued', 'running')
        RETURNING j.id, j.type, j.channel_id, j.owner_id, j.state, j.attempts, j.error_message, j.parent_id
    ), events AS (
        INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
        SELECT c.id, c.channel_id, c.owner_id, 'job:status',
               jsonb_build_object('state', c.state, 'attempt', c.attempts, 'cancelRequested', true,
                                  'errorMessage', c.error_message)
        FROM cancelled c
    )
    SELECT c.state, c.parent_id, c.channel_id, c.owner_id, c.type INTO after, parent, chan, owner, jtype
    FROM cancelled c;
    IF after IS NULL THEN
        prev_state := before;
        state := NULL;
        notified := NULL;
        RETURN NEXT;
        RETURN;
    END IF;

    -- The run's children: queued ones now (those with outside work by their worker, as
    -- above), running ones at their next checkpoint.
    WITH kids AS (
        UPDATE pgcue.jobs k
        SET cancel_requested = true,
            state = CASE WHEN k.state = 'queued' AND k.handler_state IS NULL THEN 'cancelled' ELSE k.state END,
            completed_at = CASE WHEN k.state = 'queued' AND k.handler_state IS NULL THEN now() END,
            error_message = CASE WHEN k.state = 'queued' AND k.handler_state IS NULL
                                 THEN 'Job cancelled with its pipeline' ELSE k.error_message END,
            run_at = CASE WHEN k.state = 'queued' AND k.handler_state IS NOT NULL
                          THEN least(k.run_at, now()) ELSE k.run_at END,
            updated_at = now()
        WHERE k.parent_id = target AND k.state IN ('queued', 'running')
        RETURNING k.id, k.type, k.channel_id, k.owner_id, k.state, k.attempts, k.error_message
    ), events AS (
        INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
        SELECT k.id, k.channel_id, k.owner_id, 'job:status',
               jsonb_build_object('state', k.state, 'attempt', k.attempts, 'cancelRequested', true,
                                  'errorMessage', k.error_message, 'reason', 'pipeline cancelled')
        FROM kids k
    )
    SELECT count(pg_notify(n.channel, n.payload)) INTO sent
    FROM (SELECT DISTINCT CASE WHEN k.state = 'running' THEN 'pgcue_cancel' ELSE 'pgcue_wake' END AS channel,
                          CASE WHEN k.state = 'running' THEN k.id::text ELSE k.type END AS payload
          FROM kids k WHERE k.state IN ('running', 'queued')) n;

    -- The run's stages: in progress -> cancelled, pending -> skipped; done ones stay.
    WITH st AS (
        UPDATE pgcue.pipeline_stages s
        SET state = CASE WHEN s.state = 'pending' THEN 'skipped' ELSE 'cancelled' END,
            finished_at = now(),
            updated_at = now()
        WHERE s.job_id = target AND s.state IN ('pending', 'running', 'in_review', 'awaiting_approval')
        RETURNING s.job_id, s.position, s.name, s.state, s.iteration
    )
    INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
    SELECT st.job_id, chan, owner, 'stage:updated',
           jsonb_build_object('stage', st.name, 'position', st.position, 'state', st.state,
                              'iteration', st.iteration)
    FROM st ORDER BY st.position;

    -- A queued child cancelled on its own: its parked parent must look at it.
    IF parent IS NOT NULL AND after = 'cancelled' THEN
        WITH w AS (
            UPDATE pgcue.jobs p SET run_at = now(), waiting_for = NULL, updated_at = now()
            WHERE p.id = parent AND p.state = 'queued' AND p.waiting_for = 'children'
            RETURNING p.type
        )
        SELECT sent + count(pg_notify('pgcue_wake', w.type)) INTO sent FROM w;
    END IF;

    PERFORM pg_notify('pgcue_events', '');
    sent := sent + 1;
    IF after = 'running' THEN
        PERFORM pg_notify('pgcue_cancel', target::text);
        sent := sent + 1;
    ELSIF after = 'queued' THEN  -- outside work to stop: a worker of its type must claim it
        PERFORM pg_notify('pgcue_wake', jtype);
        sent := sent + 1;
    END IF;
    prev_state := before;
    state := after;
    notified := sent;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION pgcue.cancel_job(uuid) IS
    'Cancel a queued job, or ask a running one (or one whose outside work is in flight) to stop; cascades to a pipeline''s children and stages. Same rules as the API.';

-- --- retry (0003): a fresh start -----------------------------------------------------------
-- A person's retry starts the job afresh: its outside work is forgotten (a new prediction
-- is made, with a new idempotency key) and it waits for nothing.
CREATE OR REPLACE FUNCTION pgcue.retry_job(job_id uuid)
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
        progress = 0, progress_message = NULL, handler_state = NULL, waiting_for = NULL,
        updated_at = now()
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
    'Put a failed or cancelled job back in the queue with fresh attempts and no outside work; same rules as the API.';
