-- mark_artifact_folder: the running job (fenced) is about to write artifacts: from now on a
-- delete of the job queues its folder for removal (the trigger of migration 0007).
-- params: $1 id uuid, $2 fence bigint
UPDATE pgcue.jobs SET artifact_bytes = coalesce(artifact_bytes, 0)
WHERE id = $1 AND fence = $2 AND state = 'running' AND artifact_bytes IS NULL;
