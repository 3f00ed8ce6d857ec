-- forget_artifact_deletions: these jobs' folders are gone from disk.
-- params: $1 job ids uuid[]
DELETE FROM pgcue.artifact_deletions WHERE job_id = ANY($1::uuid[]);
