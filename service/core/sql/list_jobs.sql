-- list_jobs: a page of jobs in some channels newest first, any type and state
-- (GET /api/jobs, the panel's list). Keyset-paginated from a cursor that is always set, so
-- the bound is an index condition: a page costs the same at the top and a million rows
-- down.
-- params: $1 channel ids text[], $2 cursor created_at timestamptz, $3 cursor id uuid (the
--         last row of the previous page; 'infinity' and the largest uuid start from the
--         top), $4 created at or after timestamptz ('-infinity' = any), $5 include
--         pipeline children bool, $6 limit int
-- plan (EXPLAIN ANALYZE, 5,000,000 jobs, the channel holding 2,500,000 of them):
--   Limit -> Sort (top-N) -> Nested Loop
--     -> Function Scan on unnest c
--     -> Limit -> Index Scan using jobs_channel_idx on jobs x
--          Index Cond: (channel_id = c.channel_id AND ROW(created_at, id) < ROW($2, $3)
--                       AND created_at >= $4)
--          Filter: ($5 OR parent_id IS NULL)
--   about 0.3 ms for 51 rows; without children a run's stages are skipped by the filter,
--   so a page costs (page size x stages per run) entries at worst, not the channel's size.
SELECT j.*
FROM unnest($1::text[]) AS c(channel_id)
CROSS JOIN LATERAL (
    SELECT * FROM pgcue.jobs x
    WHERE x.channel_id = c.channel_id
      AND (x.created_at, x.id) < ($2::timestamptz, $3::uuid)
      AND x.created_at >= $4::timestamptz
      AND ($5::bool OR x.parent_id IS NULL)
    ORDER BY x.created_at DESC, x.id DESC
    LIMIT $6
) j
ORDER BY j.created_at DESC, j.id DESC
LIMIT $6;
