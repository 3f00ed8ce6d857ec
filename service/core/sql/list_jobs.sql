-- list_jobs: a page of jobs in some channels newest first, any type and state
-- (GET /api/jobs, the panel's list). Keyset-paginated from a cursor that is always set, so
-- the bound is an index condition: a page costs the same at the top and a million rows
-- down.
-- params: $1 channel ids text[], $2 cursor created_at timestamptz, $3 cursor id uuid (the
--         last row of the previous page; 'infinity' and the largest uuid start from the
--         top), $4 created at or after timestamptz ('-infinity' = any), $5 include
--         pipeline children bool, $6 limit int
--
-- There is no index on (channel_id, created_at) alone: it took a new entry at every claim
-- and completion, a tenth of PostgreSQL's cost per job (migration 0010). The page is a
-- merge of jobs_channel_type_state_idx instead, like list_jobs_filtered.sql: the types a
-- channel has jobs of (a skip scan, one probe per type; not the registry, so a job of a
-- type nobody registers any more is still listed), then per (channel, type, state) at most
-- a page of (created_at, id) from the cursor down, read from the index alone; the newest
-- of those are the page, and only its rows are fetched from the table.
-- plan (EXPLAIN ANALYZE, generic, 2,000,000 jobs, the channel holding 1,000,000 of them
--       in 7 types):
--   Sort -> Nested Loop
--     -> Limit -> Sort (top-N) -> Nested Loop
--          -> CTE types: Recursive Union (Index Only Scan using jobs_channel_type_state_idx,
--             Index Cond: channel_id = c.channel_id AND type > t.type, Limit 1; 8 probes)
--          -> Limit -> Index Only Scan using jobs_channel_type_state_idx on jobs i
--               Index Cond: (channel_id = t.channel_id AND type = t.type AND state = s.state
--                            AND ROW(created_at, id) < ROW($2, $3) AND created_at >= $4)
--               Filter: ($5 OR parent_id IS NULL)   [35 loops, Heap Fetches: 0]
--     -> Index Scan using jobs_pkey on jobs j (id = i.id)   [51 loops]
--   about 2 ms for 51 rows at the top or 500,000 rows down (0.9 ms on the dropped index).
--   Without children a run's stages are skipped by the filter, so a page costs
--   (types x states x page size x stages per run) entries at worst, never the channel's size.
WITH RECURSIVE types (channel_id, type) AS (
    SELECT c.channel_id,
           (SELECT i.type FROM pgcue.jobs i WHERE i.channel_id = c.channel_id ORDER BY i.type LIMIT 1)
    FROM unnest($1::text[]) AS c(channel_id)
  UNION ALL
    SELECT t.channel_id,
           (SELECT i.type FROM pgcue.jobs i WHERE i.channel_id = t.channel_id AND i.type > t.type
            ORDER BY i.type LIMIT 1)
    FROM types t
    WHERE t.type IS NOT NULL
), page AS (
    SELECT x.id
    FROM types t
    CROSS JOIN unnest(ARRAY['queued', 'running', 'completed', 'failed', 'cancelled']) AS s(state)
    CROSS JOIN LATERAL (
        SELECT i.id, i.created_at FROM pgcue.jobs i
        WHERE i.channel_id = t.channel_id AND i.type = t.type AND i.state = s.state
          AND (i.created_at, i.id) < ($2::timestamptz, $3::uuid)
          AND i.created_at >= $4::timestamptz
          AND ($5::bool OR i.parent_id IS NULL)
        ORDER BY i.created_at DESC, i.id DESC
        LIMIT $6
    ) x
    WHERE t.type IS NOT NULL
    ORDER BY x.created_at DESC, x.id DESC
    LIMIT $6
)
SELECT j.*
FROM page p
JOIN pgcue.jobs j ON j.id = p.id
ORDER BY j.created_at DESC, j.id DESC;
