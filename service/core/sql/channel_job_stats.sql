-- channel_job_stats: depth per type and state in some channels, and the age of the oldest
-- runnable queued job; the fleet's workers seen in the last $2 seconds.
-- params: $1 channel ids text[] (NULL = every channel), $2 recent seconds float8
-- plan: a scan of jobs grouped by (type, state); cheap while finished jobs are pruned.
SELECT s.type, s.state, s.jobs, s.oldest_runnable_seconds,
       (SELECT count(*) FROM pgcue.workers w
        WHERE w.stopped_at IS NULL AND w.last_seen_at > now() - make_interval(secs => $2)) AS workers
FROM (SELECT NULL::text AS type, NULL::text AS state, 0::bigint AS jobs,
             NULL::float8 AS oldest_runnable_seconds
      UNION ALL
      SELECT type, state, count(*),
             extract(epoch FROM now() - min(run_at) FILTER (WHERE state = 'queued' AND run_at <= now()))::float8
      FROM pgcue.jobs
      WHERE $1::text[] IS NULL OR channel_id = ANY($1::text[])
      GROUP BY type, state) s
ORDER BY s.type NULLS FIRST, s.state;
