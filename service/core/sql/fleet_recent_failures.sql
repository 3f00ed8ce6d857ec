-- fleet_recent_failures: the latest failed attempts, newest first, with the columns of the
-- recent_failures view (what psql shows), read on indexed paths: the $1 jobs with a failed
-- attempt that finished last, and the jobs still retrying (unfinished, with errors), both
-- through jobs_errors_idx (partial: jobs with a failed attempt). The view itself reads
-- every such job; this reads at most $1 of the finished ones.
-- params: $1 limit int
SELECT j.id, j.type, j.channel_id, (e.value ->> 'attempt')::int AS attempt, j.max_attempts,
       (e.value ->> 'at')::timestamptz AS failed_at, e.value ->> 'kind' AS kind,
       e.value ->> 'error' AS error, j.state AS job_state
FROM (
    (SELECT id, type, channel_id, max_attempts, state, errors FROM pgcue.jobs
     WHERE errors <> '[]'::jsonb AND completed_at IS NOT NULL
     ORDER BY completed_at DESC
     LIMIT $1)
    UNION ALL
    (SELECT id, type, channel_id, max_attempts, state, errors FROM pgcue.jobs
     WHERE errors <> '[]'::jsonb AND completed_at IS NULL
     LIMIT 10 * $1)
) j
CROSS JOIN LATERAL jsonb_array_elements(j.errors) AS e(value)
ORDER BY failed_at DESC
LIMIT $1;
