-- fleet_throughput: jobs that finished in the last $1 seconds, per minute, type and final
-- state (the operator view's throughput and failure chart, and each type's last hour).
-- params: $1 seconds float8
-- plan: Index Scan using jobs_finished_idx (completed_at > now() - $1), HashAggregate:
--   the cost follows what finished in the window, not what the table keeps.
SELECT date_trunc('minute', completed_at) AS minute, type, state, count(*) AS jobs
FROM pgcue.jobs
WHERE completed_at > now() - make_interval(secs => $1)
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3;
