-- reset_pipeline_stages: a failed or cancelled pipeline run that was retried starts again
-- from its failed (or cancelled) stage: those stages, and the skipped ones after them,
-- go back to `pending` with a fresh count of iterations. Done stages stay done. Their
-- feedback history is kept.
-- params: $1 job id uuid
WITH st AS (
    UPDATE pgcue.pipeline_stages s
    SET state = 'pending', iteration = 0, child_id = NULL, review_child_id = NULL,
        result = NULL, result_path = NULL, finished_at = NULL, updated_at = now()
    WHERE s.job_id = $1 AND s.state IN ('failed', 'cancelled', 'skipped')
    RETURNING s.job_id, s.position, s.name, s.state, s.iteration
), run AS (
    SELECT channel_id, owner_id FROM pgcue.jobs WHERE id = $1
), events AS (
    INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
    SELECT st.job_id, r.channel_id, r.owner_id, 'stage:updated',
           jsonb_build_object('stage', st.name, 'position', st.position, 'state', st.state,
                              'iteration', st.iteration, 'reason', 'retried')
    FROM st CROSS JOIN run r
    ORDER BY st.position
)
SELECT st.position, (SELECT pg_notify('pgcue_events', '')) IS NULL AS notified
FROM st;
