-- prune_jobs: delete up to $2 jobs that finished more than $1 seconds ago, with their
-- events. Run by the maintenance leader in batches until fewer than $2 are deleted.
-- params: $1 retention seconds float8, $2 batch size int
-- plan: jobs_finished_idx range scan (completed_at < cutoff), then job_events_job_idx.
WITH old AS (
    SELECT id FROM pgcue.jobs
    WHERE completed_at < now() - make_interval(secs => $1)
    ORDER BY completed_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM pgcue.jobs j USING old WHERE j.id = old.id RETURNING j.id
), events AS (
    DELETE FROM pgcue.job_events e USING gone WHERE e.job_id = gone.id
)
SELECT count(*) AS deleted FROM gone;
