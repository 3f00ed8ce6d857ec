-- recent_completed_jobs_all: the most recently completed jobs of every channel (an admin
-- key without channelId); pipeline children only when asked.
-- params: $1 limit int, $2 include pipeline children bool
-- plan: Index Scan Backward using jobs_finished_idx (completed_at), Filter on state and
--   parent, Incremental Sort on id for ties: reads back from now until $1 rows match.
SELECT * FROM pgcue.jobs
WHERE completed_at IS NOT NULL AND state = 'completed' AND ($2::bool OR parent_id IS NULL)
ORDER BY completed_at DESC, id DESC
LIMIT $1;
