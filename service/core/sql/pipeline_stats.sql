-- pipeline_stats: parked pipeline runs in some channels: waiting for a person, and
-- waiting for their stage's child job.
-- params: $1 channel ids text[] (NULL = every channel)
-- plan: jobs_claim_idx (queued rows only: the backlog, not the history).
SELECT count(*) FILTER (WHERE waiting_for = 'approval') AS awaiting_approval,
       count(*) FILTER (WHERE waiting_for = 'children') AS waiting_for_children
FROM pgcue.jobs
WHERE state = 'queued' AND waiting_for IS NOT NULL
  AND ($1::text[] IS NULL OR channel_id = ANY($1::text[]));
