-- release_artifact_bytes: a running job's artifact folder was removed (the attempt failed
-- for good): its bytes stop counting against its channel.
-- params: $1 id uuid, $2 fence bigint
WITH job AS (
    SELECT id, channel_id, coalesce(artifact_bytes, 0) AS bytes FROM pgcue.jobs
    WHERE id = $1 AND fence = $2 AND state = 'running'
    FOR NO KEY UPDATE
), usage AS (
    UPDATE pgcue.channel_storage s SET bytes = greatest(0, s.bytes - job.bytes), updated_at = now()
    FROM job WHERE s.channel_id = job.channel_id AND job.bytes > 0
)
UPDATE pgcue.jobs j SET artifact_bytes = 0 FROM job WHERE j.id = job.id;
