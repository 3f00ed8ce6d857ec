-- list_jobs_filtered: a page of jobs in some channels newest first, of some types and
-- states (GET /api/jobs?type=&state=, the panel's filters, the bulk actions' batches).
-- One range of jobs_channel_type_state_idx per (channel, type, state), each read from the
-- cursor down for at most a page, merged: a page costs channels x types x states x page
-- size index entries at most, never a scan of a channel's history for the few rows that
-- match (a channel with a million completed jobs and twelve failed ones finds the failed
-- ones at once).
-- params: $1 channel ids text[], $2 types text[] (NULL = every registered type),
--         $3 states text[], $4 cursor created_at timestamptz, $5 cursor id uuid (the last
--         row of the previous page; 'infinity' and the largest uuid start from the top),
--         $6 created at or after timestamptz ('-infinity' = any), $7 include pipeline
--         children bool, $8 waiting_for text (NULL = any), $9 limit int
-- plan (EXPLAIN ANALYZE, 5,000,000 jobs, state = failed in a channel of 2,500,000):
--   Limit -> Sort (top-N) -> Nested Loop
--     -> Nested Loop (unnest c x unnest t x unnest s)  [InitPlan: job_types names]
--     -> Limit -> Index Scan using jobs_channel_type_state_idx on jobs x
--          Index Cond: (channel_id = c.channel_id AND type = t.type AND state = s.state
--                       AND ROW(created_at, id) < ROW($4, $5) AND created_at >= $6)
--   about 1 ms with twelve types.
SELECT j.*
FROM unnest($1::text[]) AS c(channel_id)
CROSS JOIN unnest(coalesce($2::text[], ARRAY(SELECT name FROM pgcue.job_types))) AS t(type)
CROSS JOIN unnest($3::text[]) AS s(state)
CROSS JOIN LATERAL (
    SELECT * FROM pgcue.jobs x
    WHERE x.channel_id = c.channel_id AND x.type = t.type AND x.state = s.state
      AND (x.created_at, x.id) < ($4::timestamptz, $5::uuid)
      AND x.created_at >= $6::timestamptz
      AND ($7::bool OR x.parent_id IS NULL)
      AND ($8::text IS NULL OR x.waiting_for = $8)
    ORDER BY x.created_at DESC, x.id DESC
    LIMIT $9
) j
ORDER BY j.created_at DESC, j.id DESC
LIMIT $9;
