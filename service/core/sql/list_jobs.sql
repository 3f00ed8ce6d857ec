-- list_jobs: jobs newest first (a caller's channels, or every channel), optionally filtered, keyset-paginated.
-- params: $1 channel ids text[] (NULL = every channel: an admin), $2 type text, $3 state text
--         (each NULL = any), $4 cursor created_at timestamptz, $5 cursor id uuid (both NULL =
--         from the top), $6 limit int
-- plan: one channel → jobs_channel_idx from the cursor down (Index Scan, Limit);
--       several → a Merge Append of jobs_channel_idx scans, one per channel, then Limit.
SELECT * FROM pgcue.jobs
WHERE ($1::text[] IS NULL OR channel_id = ANY($1::text[]))
  AND ($2::text IS NULL OR type = $2)
  AND ($3::text IS NULL OR state = $3)
  AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))
ORDER BY created_at DESC, id DESC
LIMIT $6;
