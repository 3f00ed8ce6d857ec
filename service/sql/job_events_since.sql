-- job_events_since: one job's events after event id $2, in id order (its SSE replay).
-- params: $1 job id uuid, $2 after id bigint
-- plan: job_events_job_idx range scan.
SELECT id, job_id, channel_id, owner_id, kind, data, created_at
FROM pgcue.job_events
WHERE job_id = $1 AND id > $2
ORDER BY id;
