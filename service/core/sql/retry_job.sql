-- retry_job: a person retries a failed or cancelled job: back to `queued` now, with a
-- fresh set of attempts. The error history is kept.
-- The statement is the function pgcue.retry_job (migrations/0003_inspection.sql), shared
-- with psql users.
-- params: $1 id uuid
-- returns one row: prev_state (no row = no such job) and the new state (NULL = not allowed).
SELECT prev_state, state, notified FROM pgcue.retry_job($1);
