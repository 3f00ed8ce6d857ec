-- clear_finished_jobs: delete every finished job of a channel, with its events.
-- params: $1 channel_id text
-- plan: jobs_channel_type_state_idx range scan on its leading column (channel_id), filter on state.
WITH gone AS (
    DELETE FROM pgcue.jobs
    WHERE channel_id = $1 AND state IN ('completed', 'failed', 'cancelled')
    RETURNING id
), events AS (
    DELETE FROM pgcue.job_events e USING gone WHERE e.job_id = gone.id
)
SELECT count(*) AS deleted FROM gone;
