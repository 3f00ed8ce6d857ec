-- metrics_snapshot: everything the database-derived Prometheus gauges need, in one query.
-- params: $1 the job states text[] (pgcue.core.states.JobState, so no state list lives here)
-- One row per (registered job type, state) with its job count and, on the `queued` row,
-- the age of the oldest runnable job (0 when none); every row also carries the
-- database-wide vacuum signals (the same values repeated), so a fleet with no job types
-- still gets one row. Each type's scheduling policies (pause, limits) ride along, and the
-- number of paused channels.
--   oldest_xact_seconds: age of the oldest open transaction in this database that holds
--     a snapshot (it holds back vacuum of pgcue.jobs: a "stuck xmin");
--   xmin_age_xids: age in transaction ids of the oldest xmin any backend, replication
--     slot or prepared transaction holds.
-- Run by the API process only, at most once per cache period (service/metrics.py), never
-- per request, so N workers and N scrapers do not multiply it.
-- plan: one Seq Scan of jobs -> HashAggregate (type, state), hash-joined to the small
-- job_types × states grid; pg_stat_activity / pg_replication_slots / pg_prepared_xacts
-- are in-memory views. Cost grows with the rows kept (finished jobs until pruned):
-- about 60 ms per million rows on a laptop, so keep retention sensible.
WITH counts AS (
    SELECT type, state, count(*) AS jobs,
           min(run_at) FILTER (WHERE state = 'queued' AND run_at <= now()) AS oldest_runnable
    FROM pgcue.jobs
    GROUP BY type, state
), grid AS (
    SELECT t.name AS type, s.state, t.paused, t.global_concurrency, t.channel_concurrency,
           t.rate_limit, t.rate_period_seconds
    FROM pgcue.job_types t
    CROSS JOIN unnest($1::text[]) AS s(state)
), horizon AS (
    SELECT
        coalesce((SELECT extract(epoch FROM now() - min(a.xact_start))
                  FROM pg_stat_activity a
                  WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
                    AND a.backend_xmin IS NOT NULL), 0)::float8 AS oldest_xact_seconds,
        greatest(
            (SELECT max(age(a.backend_xmin)) FROM pg_stat_activity a
             WHERE a.pid <> pg_backend_pid()),
            (SELECT max(greatest(age(s.xmin), age(s.catalog_xmin))) FROM pg_replication_slots s),
            (SELECT max(age(p.transaction)) FROM pg_prepared_xacts p),
            0)::float8 AS xmin_age_xids
)
SELECT g.type, g.state, coalesce(c.jobs, 0)::float8 AS jobs,
       coalesce(extract(epoch FROM now() - c.oldest_runnable), 0)::float8 AS oldest_runnable_seconds,
       h.oldest_xact_seconds, h.xmin_age_xids,
       g.paused, g.global_concurrency, g.channel_concurrency, g.rate_limit, g.rate_period_seconds,
       (SELECT count(*) FROM pgcue.paused_channels)::float8 AS paused_channels
FROM horizon h
LEFT JOIN (grid g LEFT JOIN counts c USING (type, state)) ON true
ORDER BY g.type, g.state;
