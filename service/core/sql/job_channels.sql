-- job_channels: the channel of each of some jobs (no row: no such job). A worker checks the
-- artifacts a payload names against its own job's channel with it; the artifact sweeper,
-- which folders still have a job.
-- params: $1 ids uuid[]
-- plan: primary-key probes.
SELECT id, channel_id FROM pgcue.jobs WHERE id = ANY($1::uuid[]);
