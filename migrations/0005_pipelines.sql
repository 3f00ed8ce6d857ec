-- pgcue 0005: multi-stage pipelines (issue 5).
--
-- A pipeline run is a job of type `orchestrate` plus one row per stage in
-- pgcue.pipeline_stages. Each stage's work (and a job-type reviewer's verdict) runs as a
-- CHILD job (jobs.parent_id) in the run's channel. While its child works, or while a
-- person has to approve a stage, the run does not hold a worker: it is parked, `queued`
-- with `waiting_for` set and a run_at in the future (for a person: 'infinity'). A child's
-- completion (complete_jobs / fail_jobs / rescue_jobs) or a person's decision
-- (resume_pipeline) sets the run's run_at to now and wakes the orchestrate workers.
-- docs/pipelines.md tells the whole story.

ALTER TABLE pgcue.jobs
    ADD COLUMN parent_id   uuid,
    ADD COLUMN waiting_for text CONSTRAINT jobs_waiting_for_valid CHECK (waiting_for IN ('children', 'approval'));
COMMENT ON COLUMN pgcue.jobs.parent_id IS
    'The pipeline run (orchestrate job) this job works for; NULL for a job of its own. No foreign key: pruning deletes finished runs and children independently.';
COMMENT ON COLUMN pgcue.jobs.waiting_for IS
    'A parked pipeline run: children (its stage''s child job runs) or approval (a person must decide). Meaningful while queued.';
-- A finished child wakes its parent; a cancelled parent cancels its children.
CREATE INDEX jobs_parent_idx ON pgcue.jobs (parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE pgcue.pipeline_stages (
    job_id          uuid NOT NULL,
    position        integer NOT NULL CHECK (position >= 0),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    -- The stage's definition as it was when the run started (type, reviewer,
    -- maxIterations, approval): a redeploy does not change a running pipeline.
    spec            jsonb NOT NULL,
    state           text NOT NULL DEFAULT 'pending'
        CONSTRAINT pipeline_stages_state_valid CHECK (state IN
            ('pending', 'running', 'in_review', 'awaiting_approval', 'done', 'failed', 'skipped', 'cancelled')),
    iteration       integer NOT NULL DEFAULT 0 CHECK (iteration >= 0),
    feedback        jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(feedback) = 'array'),
    child_id        uuid,
    review_child_id uuid,
    result          jsonb,
    result_path     text,
    started_at      timestamptz,
    finished_at     timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, position),
    UNIQUE (job_id, name)
);
COMMENT ON TABLE pgcue.pipeline_stages IS 'The stages of each pipeline run, with their state, iterations, feedback and artifacts.';
COMMENT ON COLUMN pgcue.pipeline_stages.feedback IS
    'Review history: [{iteration, by (reviewer|person), passed, feedback, at}], oldest first.';
COMMENT ON COLUMN pgcue.pipeline_stages.child_id IS 'The work job of the current (or last) iteration.';
COMMENT ON COLUMN pgcue.pipeline_stages.result IS 'The stage''s artifact: set only once its work passed review.';

-- One row per pipeline run: where it is and what it waits for.
CREATE VIEW pgcue.pipeline_runs AS
SELECT j.id, j.channel_id, j.payload ->> 'pipeline' AS pipeline, j.state,
       CASE WHEN j.state = 'queued' THEN j.waiting_for END AS waiting_for,
       cur.name AS current_stage, cur.state AS stage_state, cur.iteration,
       (SELECT count(*) FROM pgcue.pipeline_stages s WHERE s.job_id = j.id AND s.state = 'done') AS stages_done,
       (SELECT count(*) FROM pgcue.pipeline_stages s WHERE s.job_id = j.id) AS stages,
       j.error_message, j.created_at, j.updated_at
FROM pgcue.jobs j
LEFT JOIN LATERAL (
    SELECT s.name, s.state, s.iteration FROM pgcue.pipeline_stages s
    WHERE s.job_id = j.id AND s.state <> 'done'
    ORDER BY s.position LIMIT 1) cur ON true
WHERE j.type = 'orchestrate'
ORDER BY j.created_at DESC;
COMMENT ON VIEW pgcue.pipeline_runs IS
    'Pipeline runs: state, what a parked run waits for (children or approval), current stage, stages done.';

-- Cancel, now pipeline-aware. As before (0003): a queued job is cancelled at once, a
-- running one gets cancel_requested and stops at its next checkpoint. In addition:
--  * a pipeline run's children are cancelled the same way (a running child at its next
--    checkpoint), its stages in progress end `cancelled` and its pending ones `skipped`;
--    done stages keep their artifacts;
--  * a queued child cancelled on its own wakes its parked parent, which sees the stage's
--    work cancelled.
-- plpgsql, so the cascade runs with a snapshot taken after the run's row was locked: a
-- child enqueued by an orchestrator that held the row meanwhile is seen and cancelled.
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
    sent    bigint := 0;
BEGIN
    SELECT j.state INTO before FROM pgcue.jobs j WHERE j.id = target;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    WITH cancelled AS (
        UPDATE pgcue.jobs j
        SET cancel_requested = true,
            state = CASE WHEN j.state = 'queued' THEN 'cancelled' ELSE j.state END,
            completed_at = CASE WHEN j.state = 'queued' THEN now() END,
            error_message = CASE WHEN j.state = 'queued' THEN 'Job cancelled by user request'
                                 ELSE j.error_message END,
            updated_at = now()
        WHERE j.id = target AND j.state IN ('queued', 'running')
        RETURNING j.id, j.channel_id, j.owner_id, j.state, j.attempts, j.error_message, j.parent_id
    ), events AS (
        INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
        SELECT c.id, c.channel_id, c.owner_id, 'job:status',
               jsonb_build_object('state', c.state, 'attempt', c.attempts, 'cancelRequested', true,
                                  'errorMessage', c.error_message)
        FROM cancelled c
    )
    SELECT c.state, c.parent_id, c.channel_id, c.owner_id INTO after, parent, chan, owner FROM cancelled c;
    IF after IS NULL THEN
        prev_state := before;
        state := NULL;
        notified := NULL;
        RETURN NEXT;
        RETURN;
    END IF;

    -- The run's children: queued ones now, running ones at their next checkpoint.
    WITH kids AS (
        UPDATE pgcue.jobs k
        SET cancel_requested = true,
            state = CASE WHEN k.state = 'queued' THEN 'cancelled' ELSE k.state END,
            completed_at = CASE WHEN k.state = 'queued' THEN now() END,
            error_message = CASE WHEN k.state = 'queued' THEN 'Job cancelled with its pipeline'
                                 ELSE k.error_message END,
            updated_at = now()
        WHERE k.parent_id = target AND k.state IN ('queued', 'running')
        RETURNING k.id, k.channel_id, k.owner_id, k.state, k.attempts, k.error_message
    ), events AS (
        INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
        SELECT k.id, k.channel_id, k.owner_id, 'job:status',
               jsonb_build_object('state', k.state, 'attempt', k.attempts, 'cancelRequested', true,
                                  'errorMessage', k.error_message, 'reason', 'pipeline cancelled')
        FROM kids k
    )
    SELECT count(pg_notify('pgcue_cancel', k.id::text)) INTO sent FROM kids k WHERE k.state = 'running';

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
    END IF;
    prev_state := before;
    state := after;
    notified := sent;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION pgcue.cancel_job(uuid) IS
    'Cancel a queued job, or ask a running one to stop; cascades to a pipeline''s children and stages. Same rules as the API.';

-- Resume a pipeline run waiting for a person: approve the stage (it is done) or reject
-- it with feedback (it runs again with the feedback). The API's POST
-- /api/jobs/{id}/resume runs exactly this (service/sql/resume_pipeline.sql).
-- Returns the stage decided on, or no row when the run waits for no approval.
CREATE FUNCTION pgcue.resume_pipeline(job_id uuid, approve boolean, feedback text DEFAULT NULL,
                                      decided_by text DEFAULT NULL)
RETURNS TABLE (stage text, stage_state text, iteration integer, notified bigint)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
WITH st AS (
    UPDATE pgcue.pipeline_stages s
    SET state = CASE WHEN $2 THEN 'done' ELSE 'pending' END,
        result = CASE WHEN $2 THEN s.result END,
        result_path = CASE WHEN $2 THEN s.result_path END,
        feedback = s.feedback || jsonb_build_array(jsonb_build_object(
            'iteration', s.iteration, 'by', 'person', 'user', $4, 'passed', $2,
            'feedback', coalesce($3, ''), 'at', now())),
        finished_at = CASE WHEN $2 THEN now() END,
        updated_at = now()
    WHERE s.job_id = $1 AND s.state = 'awaiting_approval'
    RETURNING s.job_id, s.position, s.name, s.state, s.iteration
), woken AS (
    UPDATE pgcue.jobs j
    SET run_at = now(), waiting_for = NULL, updated_at = now()
    FROM st
    WHERE j.id = st.job_id AND j.state = 'queued' AND j.waiting_for = 'approval'
    RETURNING j.id, j.type, j.channel_id, j.owner_id
), events AS (
    INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
    SELECT st.job_id, j.channel_id, j.owner_id, 'stage:updated',
           jsonb_build_object('stage', st.name, 'position', st.position, 'state', st.state,
                              'iteration', st.iteration, 'decision', CASE WHEN $2 THEN 'approve' ELSE 'reject' END,
                              'feedback', left(coalesce($3, ''), 200))
    FROM st JOIN pgcue.jobs j ON j.id = st.job_id
)
SELECT st.name, st.state, st.iteration,
       (SELECT count(pg_notify(n.channel, n.payload))
        FROM (SELECT 'pgcue_events' AS channel, '' AS payload
              UNION ALL
              SELECT 'pgcue_wake', type FROM woken) n) AS notified
FROM st
$$;
COMMENT ON FUNCTION pgcue.resume_pipeline(uuid, boolean, text, text) IS
    'Approve (true) or reject with feedback (false) the stage a pipeline run waits on; wakes the run.';
