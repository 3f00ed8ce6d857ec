-- list_child_jobs: a pipeline run's child jobs (its stages' work and reviews) newest first,
-- keyset-paginated (GET /api/jobs?parentId=).
-- params: $1 run id uuid, $2 channel ids text[] (NULL = every channel: an admin),
--         $3 cursor created_at timestamptz, $4 cursor id uuid ('infinity' and the largest
--         uuid start from the top), $5 limit int
-- plan: Index Scan using jobs_parent_idx (parent_id = $1), a sort of the run's few children.
SELECT * FROM pgcue.jobs
WHERE parent_id = $1
  AND ($2::text[] IS NULL OR channel_id = ANY ($2::text[]))
  AND (created_at, id) < ($3::timestamptz, $4::uuid)
ORDER BY created_at DESC, id DESC
LIMIT $5;
