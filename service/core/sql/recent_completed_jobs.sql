-- recent_completed_jobs: the most recently completed jobs of some channels, with results.
-- params: $1 channel ids text[] (NULL = every channel), $2 limit int
-- plan: jobs_channel_idx per channel filtered on state, top-N sort on completed_at
--       (a channel's finished jobs are pruned on a schedule, so the scan stays short).
SELECT * FROM pgcue.jobs
WHERE ($1::text[] IS NULL OR channel_id = ANY($1::text[]))
  AND state = 'completed'
ORDER BY completed_at DESC, id DESC
LIMIT $2;
