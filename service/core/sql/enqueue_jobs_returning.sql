-- enqueue_jobs_returning: enqueue_jobs, answering with each inserted job's whole row, so
-- an enqueue that must show the job as stored (POST /api/jobs) is one round trip: no
-- transaction around an INSERT and a SELECT. Same params as enqueue_jobs; a row the
-- insert skipped (idempotency or unique key taken) is absent and the caller resolves it.
-- Notifications: as enqueue_jobs.
-- include: _enqueue
SELECT n.*,
       (SELECT count(pg_notify(c.channel, c.payload))
        FROM (SELECT 'pgcue_events' AS channel, '' AS payload
              UNION
              SELECT 'pgcue_wake', type FROM new WHERE run_at <= now()) c) AS notified
FROM new n;
