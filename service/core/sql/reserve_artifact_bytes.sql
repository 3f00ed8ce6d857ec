-- reserve_artifact_bytes: count $3 more (or, negative, fewer) bytes of a running job's
-- artifacts against its channel, unless the channel would then keep more than $4 bytes.
-- params: $1 id uuid, $2 fence bigint, $3 delta bigint, $4 quota bigint (NULL = no limit)
-- returns: one row while the job is held (none when it was lost): reserved = whether the
-- bytes were counted, used = the channel's bytes after (or, refused, as they stand).
-- The channel's row is locked by the upsert, so concurrent jobs of one channel cannot
-- both pass the quota.
WITH job AS (
    SELECT id, channel_id FROM pgcue.jobs WHERE id = $1 AND fence = $2 AND state = 'running'
), usage AS (
    INSERT INTO pgcue.channel_storage AS s (channel_id, bytes)
    SELECT channel_id, greatest(0, $3::bigint) FROM job
    WHERE $4::bigint IS NULL OR $3::bigint <= $4::bigint
    ON CONFLICT (channel_id) DO UPDATE
    SET bytes = greatest(0, s.bytes + $3::bigint), updated_at = now()
    WHERE $4::bigint IS NULL OR $3::bigint <= 0 OR s.bytes + $3::bigint <= $4::bigint
    RETURNING s.bytes
), counted AS (
    UPDATE pgcue.jobs j SET artifact_bytes = greatest(0, coalesce(j.artifact_bytes, 0) + $3::bigint)
    FROM job
    WHERE j.id = job.id AND EXISTS (SELECT 1 FROM usage)
    RETURNING j.id
)
SELECT job.channel_id,
       EXISTS (SELECT 1 FROM usage) AS reserved,
       coalesce((SELECT bytes FROM usage),
                (SELECT bytes FROM pgcue.channel_storage WHERE channel_id = job.channel_id), 0) AS used
FROM job;
