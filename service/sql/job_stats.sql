-- job_stats: depth per type and state, and the age of the oldest runnable queued job.
-- plan: a scan of jobs grouped by (type, state); cheap while finished jobs are pruned.
-- Called at most once per scrape interval by the API (cached), never per request.
SELECT type, state, count(*) AS jobs,
       extract(epoch FROM now() - min(run_at) FILTER (WHERE state = 'queued' AND run_at <= now()))
           AS oldest_runnable_seconds
FROM pgcue.jobs
GROUP BY type, state
ORDER BY type, state;
