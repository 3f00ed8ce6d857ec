-- list_job_events: the latest events of one job, oldest first (the panel's expanded row:
-- its output, and its history of status, progress and stage changes).
-- params: $1 job id uuid, $2 output bool (true: job:output only; false: every other kind),
--         $3 limit int
-- plan: Index Scan Backward using job_events_job_idx (job_id, id), Filter on kind, Limit:
--   one job's events at most, read from the newest.
SELECT id, kind, data, created_at FROM (
    SELECT id, kind, data, created_at FROM pgcue.job_events
    WHERE job_id = $1 AND (kind = 'job:output') = $2::bool
    ORDER BY id DESC
    LIMIT $3
) latest
ORDER BY id;
