-- pgcue 0004: scheduling policies. Fairness across channels, fleet-wide limits per type
-- (and per channel), rate limits, unique jobs, cron schedules, pausing types and channels.

-- Per-type policies. NULL means no limit.
ALTER TABLE pgcue.job_types
    ADD COLUMN global_concurrency  integer CHECK (global_concurrency >= 1),
    ADD COLUMN channel_concurrency integer CHECK (channel_concurrency >= 1),
    ADD COLUMN rate_limit          integer CHECK (rate_limit >= 1),
    ADD COLUMN rate_period_seconds integer NOT NULL DEFAULT 60 CHECK (rate_period_seconds BETWEEN 1 AND 86400),
    ADD COLUMN paused              boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN pgcue.job_types.global_concurrency IS 'Most jobs of this type running at once across the whole fleet.';
COMMENT ON COLUMN pgcue.job_types.channel_concurrency IS 'Most jobs of this type running at once in one channel.';
COMMENT ON COLUMN pgcue.job_types.rate_limit IS 'Most starts of this type per rate_period_seconds (sliding window).';
COMMENT ON COLUMN pgcue.job_types.paused IS 'Paused: no claims; running jobs finish.';

-- The claim index, re-keyed by channel so a claim can take jobs round-robin across
-- channels (claim_jobs.sql walks the distinct channels with a skip scan, then takes each
-- channel's next jobs in priority order). Still only queued rows.
DROP INDEX pgcue.jobs_claim_idx;
CREATE INDEX jobs_claim_idx ON pgcue.jobs (type, channel_id, priority DESC, run_at) WHERE state = 'queued';

-- Running jobs per type and channel: the fleet-wide and per-channel limits count them.
-- None of these columns changes while a job runs, so heartbeats stay HOT.
DROP INDEX pgcue.jobs_running_idx;
CREATE INDEX jobs_running_idx ON pgcue.jobs (type, channel_id) WHERE state = 'running';

-- Unique jobs: at most one queued-or-running job per (type, unique_key).
ALTER TABLE pgcue.jobs ADD COLUMN unique_key text CHECK (length(unique_key) BETWEEN 1 AND 200);
CREATE UNIQUE INDEX jobs_unique_active_idx ON pgcue.jobs (type, unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('queued', 'running');

-- Paused channels: claims skip them; running jobs finish.
CREATE TABLE pgcue.paused_channels (
    channel_id text PRIMARY KEY,
    paused_at  timestamptz NOT NULL DEFAULT now(),
    reason     text NOT NULL DEFAULT ''
);

-- Starts of rate-limited types in their current window (only those types write here).
CREATE TABLE pgcue.rate_starts (
    type       text NOT NULL REFERENCES pgcue.job_types (name) ON DELETE CASCADE,
    started_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rate_starts_type_idx ON pgcue.rate_starts (type, started_at);

-- Periodic jobs. The maintenance leader enqueues each due tick with the idempotency key
-- 'schedule:<name>:<tick>', so a tick is enqueued once even if two processes both lead.
CREATE TABLE pgcue.schedules (
    name        text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 200),
    cron        text NOT NULL,
    type        text NOT NULL REFERENCES pgcue.job_types (name),
    channel_id  text NOT NULL,
    payload     jsonb NOT NULL DEFAULT '{}',
    priority    smallint NOT NULL DEFAULT 0,
    catch_up    boolean NOT NULL DEFAULT false,
    paused      boolean NOT NULL DEFAULT false,
    next_run_at timestamptz NOT NULL,
    last_run_at timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON COLUMN pgcue.schedules.catch_up IS 'After downtime: true enqueues every missed tick, false only the next one.';
CREATE INDEX schedules_due_idx ON pgcue.schedules (next_run_at) WHERE NOT paused;

-- Pausing, for psql as for the API and the CLI (which call these same functions).
CREATE FUNCTION pgcue.set_type_paused(job_type text, pause boolean) RETURNS boolean
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    UPDATE pgcue.job_types SET paused = pause, updated_at = now() WHERE name = job_type RETURNING true;
$$;
COMMENT ON FUNCTION pgcue.set_type_paused(text, boolean) IS
    'Pause (true) or resume (false) claims of a job type; NULL if there is no such type. Running jobs finish.';

CREATE FUNCTION pgcue.set_channel_paused(channel text, pause boolean, why text DEFAULT '') RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF pause THEN
        INSERT INTO pgcue.paused_channels (channel_id, reason) VALUES (channel, why)
        ON CONFLICT (channel_id) DO NOTHING;
    ELSE
        DELETE FROM pgcue.paused_channels WHERE channel_id = channel;
        -- Its queued jobs may run now: wake the workers of their types.
        PERFORM pg_notify('pgcue_wake', t.type)
        FROM (SELECT DISTINCT type FROM pgcue.jobs WHERE channel_id = channel AND state = 'queued') t;
    END IF;
    RETURN pause;
END $$;
COMMENT ON FUNCTION pgcue.set_channel_paused(text, boolean, text) IS
    'Pause (true) or resume (false) claims of every job in a channel. Running jobs finish.';

-- Policies at a glance: limits, pauses and what is running against them.
CREATE VIEW pgcue.type_policies AS
SELECT t.name AS type, t.plan, t.paused, t.concurrency AS per_process_concurrency,
       t.global_concurrency, t.channel_concurrency, t.rate_limit, t.rate_period_seconds,
       (SELECT count(*) FROM pgcue.jobs j WHERE j.state = 'running' AND j.type = t.name) AS running,
       (SELECT count(*) FROM pgcue.jobs j WHERE j.state = 'queued' AND j.type = t.name) AS queued,
       (SELECT count(*) FROM pgcue.rate_starts s
        WHERE s.type = t.name AND s.started_at > now() - make_interval(secs => t.rate_period_seconds))
           AS starts_in_window
FROM pgcue.job_types t
ORDER BY t.name;
COMMENT ON VIEW pgcue.type_policies IS 'Per type: pause, limits, and running/queued/started against them.';
