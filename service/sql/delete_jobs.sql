-- delete_jobs: delete finished jobs (and their events) by id; running and queued jobs stay.
-- params: $1 ids uuid[]
-- returns: the deleted ids.
WITH gone AS (
    DELETE FROM pgcue.jobs
    WHERE id = ANY($1::uuid[]) AND state IN ('completed', 'failed', 'cancelled')
    RETURNING id
), events AS (
    DELETE FROM pgcue.job_events e USING gone WHERE e.job_id = gone.id
)
SELECT id FROM gone;
