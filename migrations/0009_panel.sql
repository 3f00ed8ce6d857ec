-- pgcue 0009: what the Jobs panel (service/api/panel/, docs/panel.md) and the API behind it
-- need: lists and counts on indexed paths only, browser sessions, a pipeline run's whole
-- duration, and seed 002's fourth live event.
--
-- The three indexes are built here under the migration's lock (a few seconds per million
-- jobs, during which enqueues wait). On a big table create them first with
-- `CREATE INDEX CONCURRENTLY IF NOT EXISTS …` (the same definitions) and then migrate:
-- IF NOT EXISTS keeps the ones already built.

-- --- lists and counts that never scan the history ------------------------------------------
-- A channel's jobs of one type in one state, newest first: GET /api/jobs filtered by type
-- and/or state takes one range of this index per (type, state) it asks for and merges
-- them (sql/list_jobs_filtered.sql), so a page costs (types x states x page size) index
-- entries, whatever the channel's history holds; the panel's capped counts read it too.
-- parent_id rides along so that a count of a channel's own jobs (not a run's stage jobs)
-- is an index-only scan.
CREATE INDEX IF NOT EXISTS jobs_channel_type_state_idx
    ON pgcue.jobs (channel_id, type, state, created_at DESC, id DESC) INCLUDE (parent_id);

-- A channel's completed jobs by completion time: GET /api/jobs/recent and the panel's
-- result cards. Partial: an entry is made once, when a job completes.
CREATE INDEX IF NOT EXISTS jobs_channel_completed_idx
    ON pgcue.jobs (channel_id, completed_at DESC, id DESC) WHERE state = 'completed';

-- Jobs with a failed attempt, finished ones by completion time (their failures come before
-- it) and unfinished ones (retrying) under NULL: the operator view's recent failures, and
-- the recent_failures view, which until now read every job's errors.
CREATE INDEX IF NOT EXISTS jobs_errors_idx
    ON pgcue.jobs (completed_at DESC) WHERE errors <> '[]'::jsonb;

-- --- a pipeline run's duration covers the whole run ------------------------------------------
-- A run parks between its moves (sql/park_job.sql), and every claim used to set started_at
-- anew, so a finished run's startedAt and durationMs told only of its last move. A job
-- that has parked is marked, and its later claims keep its started_at
-- (sql/claim_jobs.sql): startedAt and durationMs cover the run from its first start to its
-- finish, a crash and rescue in between included. A person's retry starts afresh.
ALTER TABLE pgcue.jobs ADD COLUMN parked boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN pgcue.jobs.parked IS
    'The job has parked (a pipeline run between its moves) since it was enqueued or retried: its later claims continue the run and keep started_at.';

-- --- retry (0008), which starts a parked run afresh ------------------------------------------
CREATE OR REPLACE FUNCTION pgcue.retry_job(job_id uuid)
RETURNS TABLE (prev_state text, state text, notified bigint)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
WITH prev AS (
    SELECT state FROM pgcue.jobs WHERE id = $1
), retried AS (
    UPDATE pgcue.jobs j
    SET state = 'queued', attempts = 0, cancel_requested = false, run_at = now(),
        completed_at = NULL, error_message = NULL, result = NULL, result_path = NULL,
        progress = 0, progress_message = NULL, handler_state = NULL, waiting_for = NULL,
        parked = false, updated_at = now()
    WHERE j.id = $1 AND j.state IN ('failed', 'cancelled')
    RETURNING j.id, j.type, j.channel_id, j.owner_id, j.state, j.max_attempts
), events AS (
    INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
    SELECT id, channel_id, owner_id, 'job:status',
           jsonb_build_object('state', 'queued', 'attempt', 0, 'maxAttempts', max_attempts,
                              'reason', 'retried')
    FROM retried
)
SELECT p.state AS prev_state, r.state,
       (SELECT count(pg_notify(n.channel, n.payload))
        FROM (SELECT 'pgcue_events' AS channel, '' AS payload
              UNION ALL
              SELECT 'pgcue_wake', type FROM retried) n
        WHERE EXISTS (SELECT 1 FROM retried)) AS notified
FROM prev p LEFT JOIN retried r ON true
$$;
COMMENT ON FUNCTION pgcue.retry_job(uuid) IS
    'Put a failed or cancelled job back in the queue with fresh attempts and no outside work; same rules as the API.';

-- --- seed 002's fourth live event ------------------------------------------------------------
-- `proposals:updated`: a proposals job completed with a new result (sql/complete_jobs.sql).
-- The new list contains the old one, so no row can fail it.
ALTER TABLE pgcue.job_events DROP CONSTRAINT job_events_kind_check;
ALTER TABLE pgcue.job_events ADD CONSTRAINT job_events_kind_check
    CHECK (kind IN ('job:status', 'job:output', 'job:progress', 'stage:updated', 'proposals:updated'));

-- --- browser sessions ------------------------------------------------------------------------
-- The panel's sign-in: a person pastes an API key once and gets an HttpOnly, SameSite
-- cookie holding a random session token, of which only the SHA-256 is stored (like the
-- keys). A session acts with its key's rights, ends with the key (revoked or deleted), at
-- its expiry, or at logout; the key itself is never kept by the browser.
CREATE TABLE pgcue.sessions (
    token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    key_id     bigint NOT NULL REFERENCES pgcue.api_keys (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_expires_idx ON pgcue.sessions (expires_at);
CREATE INDEX sessions_key_idx ON pgcue.sessions (key_id);
COMMENT ON TABLE pgcue.sessions IS
    'Panel sign-ins: sha256(session token) only, each acting with its API key''s rights until expires_at or logout.';
