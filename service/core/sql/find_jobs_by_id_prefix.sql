-- find_jobs_by_id_prefix: jobs whose id starts with some hex digits (the panel's search by
-- id: a pasted id, or the first 8 digits it shows), in some channels, newest first.
-- params: $1 lowest id uuid (the prefix padded with 0), $2 highest id uuid (padded with f),
--         $3 channel ids text[], $4 limit int
-- plan: Index Scan Backward using jobs_pkey (id BETWEEN $1 AND $2), Filter on channel:
--   pgcue's ids are time-ordered (UUIDv7), so 8 digits span about a minute of enqueues.
SELECT * FROM pgcue.jobs
WHERE id BETWEEN $1 AND $2 AND channel_id = ANY ($3::text[])
ORDER BY id DESC
LIMIT $4;
