-- update_pipeline_stage: move one stage of a pipeline run to a new state, with its
-- stage:updated event, and show it as the run's current stage (jobs.stage).
-- params: $1 job id uuid, $2 position int, $3 new state text, $4 iteration int (NULL = unchanged),
--         $5 feedback entry text (JSON object, appended to the history; NULL = none),
--         $6 child id uuid (NULL = unchanged), $7 review child id uuid (NULL = unchanged),
--         $8 result text (JSON; NULL = unchanged), $9 result path text (NULL = unchanged),
--         $10 expected current state text (the update applies only from it)
-- returns: the stage as changed (no row: it was not in the expected state).
WITH st AS (
    UPDATE pgcue.pipeline_stages s
    SET state = $3,
        iteration = coalesce($4, s.iteration),
        feedback = CASE WHEN $5::text IS NULL THEN s.feedback
                        ELSE s.feedback || jsonb_build_array($5::text::jsonb) END,
        child_id = coalesce($6, s.child_id),
        review_child_id = coalesce($7, s.review_child_id),
        result = coalesce($8::text::jsonb, s.result),
        result_path = coalesce($9, s.result_path),
        started_at = coalesce(s.started_at, now()),
        finished_at = CASE WHEN $3 IN ('done', 'failed', 'skipped', 'cancelled') THEN now() END,
        updated_at = now()
    WHERE s.job_id = $1 AND s.position = $2 AND s.state = $10
    RETURNING s.job_id, s.position, s.name, s.state, s.iteration, s.child_id, s.review_child_id
), run AS (
    UPDATE pgcue.jobs j SET stage = st.name, updated_at = now()
    FROM st
    WHERE j.id = st.job_id
    RETURNING j.channel_id, j.owner_id
), events AS (
    INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
    SELECT st.job_id, r.channel_id, r.owner_id, 'stage:updated',
           jsonb_strip_nulls(jsonb_build_object(
               'stage', st.name, 'position', st.position, 'state', st.state, 'iteration', st.iteration,
               'childId', CASE WHEN st.state = 'in_review' THEN st.review_child_id ELSE st.child_id END,
               'feedback', left($5::text::jsonb ->> 'feedback', 200),
               'passed', ($5::text::jsonb -> 'passed')))
    FROM st CROSS JOIN run r
)
SELECT st.position, st.name, st.state, st.iteration,
       (SELECT pg_notify('pgcue_events', '')) IS NULL AS notified
FROM st;
