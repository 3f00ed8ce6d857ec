-- retry_jobs: a person retries many failed or cancelled jobs at once (POST /api/jobs/bulk),
-- each exactly as pgcue.retry_job does it alone (the same rules, events and wake-ups;
-- PostgreSQL merges the identical notifications of the one transaction).
-- params: $1 ids uuid[]
-- returns the ids that were put back in the queue (a job that is no longer failed or
-- cancelled is left as it is).
SELECT i.id FROM unnest($1::uuid[]) AS i(id)
CROSS JOIN LATERAL pgcue.retry_job(i.id) AS r
WHERE r.state IS NOT NULL;
