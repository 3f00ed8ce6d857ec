-- extend_leases: a worker's heartbeat. Extends the lease of each job it still holds
-- (fenced by the claim's fence) and touches the worker's row, in one statement.
-- params: $1 ids uuid[], $2 fences bigint[], $3 lease seconds float8[], $4 worker id text
-- returns: the jobs still held, with their cancel flag. A job missing from the answer
-- was lost (rescued, or finished by someone else): the worker must stop writing to it.
-- Only lease_expires_at changes, which no index holds, so the update is HOT.
WITH touched AS (
    UPDATE pgcue.workers SET last_seen_at = now() WHERE id = $4
)
UPDATE pgcue.jobs j
SET lease_expires_at = now() + make_interval(secs => h.lease_seconds)
FROM unnest($1::uuid[], $2::bigint[], $3::float8[]) AS h(id, fence, lease_seconds)
WHERE j.id = h.id AND j.fence = h.fence AND j.state = 'running'
RETURNING j.id, j.cancel_requested;
