-- lock_pipeline_run: the orchestrator's first statement in each transaction that advances
-- a pipeline run: lock the run's row while this worker still runs the claimed attempt.
-- Holding it makes cancel_job (and a child's wake-up) wait for the transaction, so a child
-- enqueued here is seen by a concurrent cancel's cascade.
-- params: $1 id uuid, $2 fence bigint
-- returns: the run (no row: the lease was lost), with cancel_requested.
-- plan: primary-key probe.
SELECT id, channel_id, owner_id, payload, cancel_requested
FROM pgcue.jobs
WHERE id = $1 AND fence = $2 AND state = 'running'
FOR NO KEY UPDATE;
