-- bench claim_fifo: the claim without fairness (pgcue before round-robin): up to $2 runnable jobs of type $1 for worker $3 with a lease of
-- Used only by `make bench` to price fairness; needs the index bench creates:
--   CREATE INDEX bench_fifo_idx ON pgcue.jobs (type, priority DESC, run_at) WHERE state = 'queued';
-- $4 seconds; each claimed job starts its next attempt and gets a `running` event.
-- params: $1 type text, $2 limit int, $3 worker id text, $4 lease seconds float8
--
-- Hot path. Plan (EXPLAIN, 100k queued rows of one type):
--   Update on jobs
--     -> Nested Loop
--          -> Subquery Scan on next
--               -> Limit
--                    -> LockRows
--                         -> Index Scan using jobs_claim_idx on jobs
--                              Index Cond: ((type = $1) AND (run_at <= now()))
--          -> Index Scan using jobs_pkey on jobs j  (id = next.id)
-- The partial index already holds only queued rows in (priority DESC, run_at) order,
-- so LIMIT stops after $2 unlocked rows; SKIP LOCKED passes over rows another worker
-- is claiming instead of waiting for it. The CTE is there so that LIMIT and the row
-- locks apply before the UPDATE (an UPDATE has no LIMIT of its own).
WITH next AS (
    SELECT id
    FROM pgcue.jobs
    WHERE state = 'queued' AND type = $1 AND run_at <= now()
    ORDER BY priority DESC, run_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE pgcue.jobs j
    SET state = 'running',
        attempts = j.attempts + 1,
        fence = j.fence + 1,
        locked_by = $3,
        lease_expires_at = now() + make_interval(secs => $4),
        started_at = now(),
        updated_at = now()
    FROM next
    WHERE j.id = next.id
    RETURNING j.id, j.type, j.channel_id, j.owner_id, j.priority, j.payload, j.attempts,
              j.max_attempts, j.fence, j.cancel_requested, j.stage, j.created_at, j.run_at, j.started_at
), events AS (
    INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
    SELECT id, channel_id, owner_id, 'job:status',
           jsonb_build_object('state', 'running', 'attempt', attempts, 'maxAttempts', max_attempts)
    FROM claimed
)
-- The scalar subquery runs once, and only if a row was claimed (an idle poll notifies no one).
SELECT c.*, (SELECT pg_notify('pgcue_events', '')) IS NULL AS notified
FROM claimed c;
