-- fleet_queues: per job type, what waits and runs and what the fleet can run (the panel's
-- operator view): queued split into runnable (run_at passed), scheduled (run_at ahead)
-- and waiting (parked: a pipeline run's stage or a person, a provider), running, the oldest
-- runnable job's age, the live workers serving the type and their slots, and the type's
-- pause and limits.
-- params: $1 seconds a worker counts as live after its last heartbeat float8
-- plan: job_types is small; per type, queued rows through jobs_claim_idx (partial: queued)
--   and running rows through jobs_running_idx (partial: running), so the cost follows
--   the backlog, never the history; workers is one row per process.
SELECT t.name AS type, t.plan, t.paused, t.concurrency, t.global_concurrency,
       t.channel_concurrency, t.rate_limit, t.rate_period_seconds,
       q.runnable, q.scheduled, q.waiting,
       extract(epoch FROM now() - q.oldest_runnable)::float8 AS oldest_runnable_seconds,
       (SELECT count(*) FROM pgcue.jobs r WHERE r.state = 'running' AND r.type = t.name) AS running,
       w.workers, w.slots
FROM pgcue.job_types t
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE j.run_at <= now()) AS runnable,
           count(*) FILTER (WHERE j.run_at > now() AND j.waiting_for IS NULL) AS scheduled,
           count(*) FILTER (WHERE j.run_at > now() AND j.waiting_for IS NOT NULL) AS waiting,
           min(j.run_at) FILTER (WHERE j.run_at <= now()) AS oldest_runnable
    FROM pgcue.jobs j
    WHERE j.state = 'queued' AND j.type = t.name
) q
CROSS JOIN LATERAL (
    SELECT count(*) AS workers, count(*) * t.concurrency AS slots
    FROM pgcue.workers wk
    WHERE t.name = ANY (wk.types) AND wk.stopped_at IS NULL
      AND wk.last_seen_at > now() - make_interval(secs => $1)
) w
ORDER BY t.name;
