-- The panel workload's table (bench/panel_bench.py): $1 jobs made by one INSERT … SELECT
-- generate_series, shaped like a studio's week of history under the default retention:
--   * half of them in the measured user's channel (bench-channel), the rest spread over
--     200 other channels;
--   * created over the last 7 days, newest last, ids time-ordered like pgcue's UUIDv7;
--   * of every 10 rows: one pipeline run (orchestrate) and three of its stage jobs
--     (parent_id set), six jobs of their own across the studio's types;
--   * states: 2% failed (three failed attempts in `errors`), 0.5% cancelled, 0.1% queued
--     (half of them scheduled a day ahead), 0.02% running, the rest completed.
-- params: $1 jobs int, $2 the measured channel text, $3 job types text[] (besides orchestrate)
INSERT INTO pgcue.jobs (
    id, type, channel_id, owner_id, state, priority, payload, run_at, attempts, max_attempts,
    cancel_requested, result, result_path, error_message, errors, progress, locked_by,
    lease_expires_at, created_at, started_at, completed_at, updated_at, parent_id, fence)
SELECT
    g.id, g.type, g.channel_id, NULL, g.state, 0, jsonb_build_object('n', g.i),
    CASE WHEN g.state = 'queued' AND g.i % 2 = 0 THEN g.created_at + interval '1 day' ELSE g.created_at END,
    CASE WHEN g.state = 'queued' THEN 0 WHEN g.state = 'failed' THEN 3 ELSE 1 END, 3,
    g.state = 'cancelled',
    CASE WHEN g.state = 'completed' THEN jsonb_build_object('n', g.i) END,
    NULL,
    CASE WHEN g.state = 'failed' THEN 'bench failure ' || g.i
         WHEN g.state = 'cancelled' THEN 'Job cancelled by user request' END,
    CASE WHEN g.state = 'failed' THEN jsonb_build_array(
             jsonb_build_object('attempt', 1, 'at', pgcue.iso_ms(g.created_at + interval '1 s'),
                                'kind', 'error', 'error', 'bench failure'),
             jsonb_build_object('attempt', 2, 'at', pgcue.iso_ms(g.created_at + interval '3 s'),
                                'kind', 'error', 'error', 'bench failure'),
             jsonb_build_object('attempt', 3, 'at', pgcue.iso_ms(g.created_at + interval '7 s'),
                                'kind', 'error', 'error', 'bench failure ' || g.i))
         ELSE '[]'::jsonb END,
    CASE WHEN g.state IN ('completed') THEN 100 ELSE 0 END,
    CASE WHEN g.state = 'running' THEN 'bench-worker' END,
    CASE WHEN g.state = 'running' THEN now() + interval '1 day' END,
    g.created_at,
    CASE WHEN g.state <> 'queued' THEN g.created_at + interval '1 s' END,
    CASE WHEN g.state IN ('completed', 'failed', 'cancelled') THEN g.created_at + interval '8 s' END,
    g.created_at,
    CASE WHEN g.i % 10 BETWEEN 1 AND 3 THEN g.parent END,
    1
FROM (
    SELECT s.i, s.created_at,
           (lpad(to_hex((extract(epoch FROM s.created_at) * 1000)::bigint), 12, '0') || '7'
            || substr(md5(s.i::text), 1, 3) || '8' || substr(md5(s.i::text), 4, 15))::uuid AS id,
           CASE WHEN s.i % 10 BETWEEN 1 AND 3 THEN
               (lpad(to_hex((extract(epoch FROM s.t0 + ((s.i - s.i % 10) * interval '7 days') / $1) * 1000)::bigint),
                     12, '0')
                || '7' || substr(md5((s.i - s.i % 10)::text), 1, 3) || '8'
                || substr(md5((s.i - s.i % 10)::text), 4, 15))::uuid END AS parent,
           CASE WHEN s.i % 10 = 0 THEN 'orchestrate'
                ELSE ($3::text[])[1 + (s.i * 7 + s.i / 10) % array_length($3::text[], 1)] END AS type,
           CASE WHEN (s.i / 10) % 2 = 0 THEN $2::text ELSE 'other-' || ((s.i / 20) % 200) END AS channel_id,
           CASE WHEN s.i > $1::int - $1::int / 5000 THEN 'running'
                WHEN s.i > $1::int - $1::int / 1000 THEN 'queued'
                WHEN s.i % 50 = 7 THEN 'failed'
                WHEN s.i % 200 = 9 THEN 'cancelled'
                ELSE 'completed' END AS state
    FROM (SELECT i, t0, t0 + (i * interval '7 days') / $1::int AS created_at
          FROM generate_series(1, $1::int) AS i, (SELECT now() - interval '7 days' AS t0) AS start) s
) g;
