-- cancel_job: a queued job is cancelled at once; a running one gets cancel_requested and
-- its worker (told by a `cancel` notification and by its next heartbeat) ends it
-- `cancelled` at its next checkpoint.
-- The statement is the function pgcue.cancel_job (migrations/0003_inspection.sql), so
-- psql users cancel through exactly the same rules, event and notifications.
-- params: $1 id uuid
-- returns one row: prev_state (no row = no such job) and, when the cancel applied, the new
-- state. A finished job returns prev_state and a NULL state: the caller answers 409.
-- plan: primary-key probes of jobs (Function Scan over the function's CTEs).
SELECT prev_state, state, notified FROM pgcue.cancel_job($1);
