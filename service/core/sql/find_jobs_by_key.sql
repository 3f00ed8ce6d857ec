-- find_jobs_by_key: the jobs that hold these (owner, idempotency key) pairs.
-- params: $1 owner_ids text[] (NULL = no owner), $2 idempotency_keys text[]
-- plan: one probe of jobs_idempotency_idx per pair (nested loop over the unnest).
SELECT u.owner_id, u.idempotency_key, j.id
FROM unnest($1::text[], $2::text[]) AS u(owner_id, idempotency_key)
JOIN pgcue.jobs j
  ON coalesce(j.owner_id, '') = coalesce(u.owner_id, '')
 AND j.idempotency_key = u.idempotency_key
WHERE j.idempotency_key IS NOT NULL;
