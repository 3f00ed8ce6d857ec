-- cancel_jobs: a person cancels many queued or running jobs at once (POST /api/jobs/bulk),
-- each exactly as pgcue.cancel_job does it alone (queued: at once; running: at its next
-- checkpoint; a pipeline run's children and stages with it).
-- params: $1 ids uuid[]
-- returns the ids the cancel applied to (a job that finished meanwhile is left as it is).
SELECT i.id FROM unnest($1::uuid[]) AS i(id)
CROSS JOIN LATERAL pgcue.cancel_job(i.id) AS r
WHERE r.state IS NOT NULL;
