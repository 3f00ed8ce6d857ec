-- pending_artifact_deletions: deleted jobs whose artifact folder the maintenance leader
-- still has to remove, oldest first (rows written by the jobs delete trigger of 0007).
-- params: $1 limit int
-- plan: artifact_deletions_pkey is not in deletion order; the table holds only what is
-- waiting (a few seconds' worth), so a sort of it is cheap.
SELECT job_id FROM pgcue.artifact_deletions ORDER BY deleted_at LIMIT $1;
