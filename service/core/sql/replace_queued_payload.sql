-- replace_queued_payload: a unique job enqueued again with on_conflict 'replace': the
-- job still queued takes the new payload and priority (and run_at, when one is given).
-- params: $1 id uuid, $2 payload text (JSON), $3 priority smallint, $4 run_at timestamptz
-- A queued job whose outside work is in flight (handler_state: a prediction made from its
-- payload runs at a provider) keeps its payload, as a running one does.
-- returns: the id, or nothing if the job is no longer queued.
UPDATE pgcue.jobs
SET payload = $2::text::jsonb, priority = $3, run_at = coalesce($4, run_at), updated_at = now()
WHERE id = $1 AND state = 'queued' AND handler_state IS NULL
RETURNING id;
