-- recent_completed_jobs: the most recently completed jobs of some channels, with results
-- (GET /api/jobs/recent, the panel's result cards); pipeline children only when asked.
-- params: $1 channel ids text[], $2 limit int, $3 include pipeline children bool
-- plan: per channel, Limit -> Index Scan using jobs_channel_completed_idx (channel_id,
--   completed_at DESC) [partial: completed jobs], Filter ($3 OR parent_id IS NULL);
--   merged by a top-N sort. A few rows per channel, whatever its history.
SELECT j.*
FROM unnest($1::text[]) AS c(channel_id)
CROSS JOIN LATERAL (
    SELECT * FROM pgcue.jobs x
    WHERE x.channel_id = c.channel_id AND x.state = 'completed'
      AND ($3::bool OR x.parent_id IS NULL)
    ORDER BY x.completed_at DESC, x.id DESC
    LIMIT $2
) j
ORDER BY j.completed_at DESC, j.id DESC
LIMIT $2;
