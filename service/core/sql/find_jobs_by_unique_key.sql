-- find_jobs_by_unique_key: the queued or running jobs holding these (type, unique key) pairs.
-- params: $1 types text[], $2 unique_keys text[]
-- plan: one probe of jobs_unique_active_idx per pair.
SELECT u.type, u.unique_key, j.id, j.state
FROM unnest($1::text[], $2::text[]) AS u(type, unique_key)
JOIN pgcue.jobs j ON j.type = u.type AND j.unique_key = u.unique_key
WHERE j.unique_key IS NOT NULL AND j.state IN ('queued', 'running');
