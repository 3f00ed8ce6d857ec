-- list_all_jobs: jobs of every channel newest first (GET /api/jobs by an admin key without
-- channelId), optionally filtered, keyset-paginated. A caller's own channels are listed by
-- list_jobs.sql and list_jobs_filtered.sql on indexed paths; this one is an admin's look
-- across the fleet, and the panel never runs it (it always names one channel).
-- params: $1 type text, $2 state text (each NULL = any), $3 cursor created_at timestamptz,
--         $4 cursor id uuid (the last row of the previous page; 'infinity' and the largest
--         uuid start from the top), $5 created at or after timestamptz ('-infinity' = any),
--         $6 include pipeline children bool, $7 waiting_for text (NULL = any), $8 limit int
-- plan: a scan of jobs and a top-N sort: its cost follows the table.
SELECT * FROM pgcue.jobs
WHERE ($1::text IS NULL OR type = $1)
  AND ($2::text IS NULL OR state = $2)
  AND (created_at, id) < ($3::timestamptz, $4::uuid)
  AND created_at >= $5::timestamptz
  AND ($6::bool OR parent_id IS NULL)
  AND ($7::text IS NULL OR (state = 'queued' AND waiting_for = $7))
ORDER BY created_at DESC, id DESC
LIMIT $8;
