-- fleet_workers: worker processes seen in the last $1 seconds (running or stopped since),
-- newest heartbeat first (the operator view).
-- params: $1 seconds float8, $2 limit int
SELECT id, hostname, pid, types, concurrency, started_at, last_seen_at, stopped_at
FROM pgcue.workers
WHERE last_seen_at > now() - make_interval(secs => $1)
   OR stopped_at > now() - make_interval(secs => $1)
ORDER BY stopped_at IS NOT NULL, last_seen_at DESC
LIMIT $2;
