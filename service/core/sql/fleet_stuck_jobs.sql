-- fleet_stuck_jobs: running jobs whose lease expired, oldest first, as psql shows them
-- (SELECT * FROM pgcue.stuck_jobs), at most $1.
-- params: $1 limit int
-- plan: the view reads running rows through jobs_running_idx (partial: running).
SELECT id, type, channel_id, attempt, max_attempts, worker, hostname, pid,
       extract(epoch FROM lease_expired_for)::float8 AS lease_expired_seconds,
       extract(epoch FROM worker_last_seen)::float8 AS worker_last_seen_seconds,
       worker_stopped_at
FROM pgcue.stuck_jobs
LIMIT $1;
