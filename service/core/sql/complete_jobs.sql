-- complete_jobs: record successful attempts, many at once (the worker's batched completer).
-- params: $1 ids uuid[], $2 fences bigint[], $3 results text[] (JSON or NULL), $4 result paths text[],
--         $5 types text[] and $6 event kinds text[]: a completed job of type $5[i] also gets
--         a $6[i] event (pgcue.core.states.RESULT_EVENTS: proposals -> proposals:updated)
-- Fenced: a row changes only if it is still running under the claim the worker made (its
-- fence), so a worker whose lease was lost, even before a retry, changes nothing. A job whose cancellation was requested
-- ends `cancelled`, never `completed`, and keeps no result.
-- A finished child of a parked pipeline run wakes its run (see park_job.sql): one
-- `wake` notification per distinct type woken, per statement.
-- returns: the rows that changed, with their final state.
-- Hot path (the worker's completer). Plan (EXPLAIN ANALYZE, 500 ids, 20k running rows,
-- random_page_cost 1.1, which pgcue sets on its sessions: Settings.random_page_cost):
--   CTE done -> Update on jobs -> Nested Loop
--                 -> Function Scan on c (the unnest)
--                 -> Index Scan using jobs_pkey (id = c.id; filter state, attempts)
--   CTE events -> Insert on job_events;  CTE woken -> Index Scan using jobs_claim_idx
-- At the server's default random_page_cost of 4 the same batch was a Hash Join over a
-- Seq Scan of the whole jobs table (7 ms instead of 2 ms at 20k rows, growing with it).
WITH done AS (
    UPDATE pgcue.jobs j
    SET state = CASE WHEN j.cancel_requested THEN 'cancelled' ELSE 'completed' END,
        result = CASE WHEN j.cancel_requested THEN NULL ELSE c.result::jsonb END,
        result_path = CASE WHEN j.cancel_requested THEN NULL ELSE c.result_path END,
        error_message = CASE WHEN j.cancel_requested THEN 'Job cancelled by user request' END,
        progress = CASE WHEN j.cancel_requested THEN j.progress ELSE 100 END,
        completed_at = now(),
        updated_at = now(),
        locked_by = NULL,
        lease_expires_at = NULL
    FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[]) AS c(id, fence, result, result_path)
    WHERE j.id = c.id AND j.fence = c.fence AND j.state = 'running'
    RETURNING j.id, j.type, j.channel_id, j.owner_id, j.state, j.attempts, j.result_path, j.error_message,
              j.parent_id
), events AS (
    INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
    SELECT id, channel_id, owner_id, 'job:status',
           jsonb_build_object('state', state, 'attempt', attempts,
                              'resultPath', result_path, 'errorMessage', error_message)
    FROM done
    UNION ALL
    -- A type whose results others follow announces each new one on its channel, after
    -- the job's own status (so a reader that fetches the job sees the result).
    SELECT d.id, d.channel_id, d.owner_id, r.kind, jsonb_build_object('type', d.type, 'resultPath', d.result_path)
    FROM done d JOIN unnest($5::text[], $6::text[]) AS r(type, kind) ON r.type = d.type
    WHERE d.state = 'completed'
), woken AS (
    UPDATE pgcue.jobs p
    SET run_at = now(), waiting_for = NULL, updated_at = now()
    WHERE p.id = ANY (ARRAY(SELECT parent_id FROM done WHERE parent_id IS NOT NULL))
      AND p.state = 'queued' AND p.waiting_for = 'children'
    RETURNING p.type
)
SELECT d.id, d.state,
       (SELECT count(pg_notify(c.channel, c.payload))
        FROM (SELECT 'pgcue_events' AS channel, '' AS payload
              UNION
              SELECT 'pgcue_wake', type FROM woken) c) AS notified
FROM done d;
