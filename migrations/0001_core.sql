-- pgcue 0001: the queue core.
--
-- Everything lives in the schema named `pgcue` here; `pgcue migrate` rewrites that
-- name when PGCUE_SCHEMA says otherwise (see service/queries.py, qualify()).
-- This file can also be applied by hand: psql -v ON_ERROR_STOP=1 -f migrations/0001_core.sql

CREATE SCHEMA IF NOT EXISTS pgcue;

-- Job types known to the fleet. Workers upsert their type's settings when they start
-- and `pgcue migrate` syncs the built-in registry, so the API can validate a type and
-- its plan without importing worker code, and psql users can see every type's limits.
CREATE TABLE pgcue.job_types (
    name            text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_-]{0,62}$'),
    plan            text NOT NULL DEFAULT 'free' CHECK (plan IN ('free', 'paid')),
    concurrency     integer NOT NULL DEFAULT 1 CHECK (concurrency BETWEEN 1 AND 10000),
    memory_mb       integer CHECK (memory_mb > 0),
    lease_seconds   integer NOT NULL DEFAULT 60 CHECK (lease_seconds BETWEEN 1 AND 86400),
    timeout_seconds integer NOT NULL DEFAULT 3600 CHECK (timeout_seconds BETWEEN 1 AND 604800),
    max_attempts    integer NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 100),
    description     text NOT NULL DEFAULT '',
    updated_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgcue.job_types IS 'Job types and their per-type settings (seed 002 worker table).';

CREATE TABLE pgcue.jobs (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    type             text NOT NULL REFERENCES pgcue.job_types (name),
    channel_id       text NOT NULL CHECK (length(channel_id) BETWEEN 1 AND 200),
    owner_id         text CHECK (length(owner_id) BETWEEN 1 AND 200),
    state            text NOT NULL DEFAULT 'queued',
    priority         smallint NOT NULL DEFAULT 0,
    payload          jsonb NOT NULL DEFAULT '{}',
    run_at           timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL DEFAULT 3,
    cancel_requested boolean NOT NULL DEFAULT false,
    result           jsonb,
    result_path      text,
    error_message    text,
    errors           jsonb NOT NULL DEFAULT '[]',
    progress         smallint NOT NULL DEFAULT 0,
    progress_message text,
    stage            text,
    locked_by        text,
    lease_expires_at timestamptz,
    idempotency_key  text CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    completed_at     timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT jobs_state_valid
        CHECK (state IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    CONSTRAINT jobs_attempts_within_max
        CHECK (attempts >= 0 AND attempts <= max_attempts),
    CONSTRAINT jobs_max_attempts_range
        CHECK (max_attempts BETWEEN 1 AND 100),
    CONSTRAINT jobs_progress_range
        CHECK (progress BETWEEN 0 AND 100),
    -- A finished job says when it finished; an unfinished one does not.
    CONSTRAINT jobs_finished_has_completed_at
        CHECK ((state IN ('completed', 'failed', 'cancelled')) = (completed_at IS NOT NULL)),
    -- Only a running job holds a lease, and a running job always holds one.
    CONSTRAINT jobs_lease_iff_running
        CHECK ((state = 'running') = (locked_by IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CONSTRAINT jobs_running_has_started_at
        CHECK (state <> 'running' OR (started_at IS NOT NULL AND attempts >= 1)),
    CONSTRAINT jobs_cancelled_was_requested
        CHECK (state <> 'cancelled' OR cancel_requested),
    CONSTRAINT jobs_completed_has_no_error
        CHECK (state <> 'completed' OR error_message IS NULL),
    CONSTRAINT jobs_errors_is_array
        CHECK (jsonb_typeof(errors) = 'array')
);
COMMENT ON TABLE pgcue.jobs IS 'One row per job: the single source of truth of the queue.';
COMMENT ON COLUMN pgcue.jobs.attempts IS 'Attempts started so far; the running attempt''s number, used to fence a worker''s writes.';
COMMENT ON COLUMN pgcue.jobs.errors IS 'Per-attempt error history: [{attempt, at, error, kind}]';
COMMENT ON COLUMN pgcue.jobs.priority IS 'Higher runs first; ties run oldest run_at first.';

-- The claim index: only queued rows, in exactly the order claim_jobs.sql reads them.
-- A row leaves it when claimed, so it stays as small as the backlog.
CREATE INDEX jobs_claim_idx ON pgcue.jobs (type, priority DESC, run_at) WHERE state = 'queued';
-- Running rows by worker: rescue (expired leases), give-back on shutdown, inspection.
-- Heartbeats change lease_expires_at only, which no index holds, so they stay HOT.
CREATE INDEX jobs_running_idx ON pgcue.jobs (locked_by) WHERE state = 'running';
-- Listing a channel newest first (keyset pagination on created_at, id).
CREATE INDEX jobs_channel_idx ON pgcue.jobs (channel_id, created_at DESC, id DESC);
-- Pruning finished jobs by age.
CREATE INDEX jobs_finished_idx ON pgcue.jobs (completed_at) WHERE completed_at IS NOT NULL;
-- Idempotency: one job per (owner, key). NULL owner counts as one owner.
CREATE UNIQUE INDEX jobs_idempotency_idx ON pgcue.jobs ((coalesce(owner_id, '')), idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Append-only event log: what SSE streams and replays. `tx` is the writing transaction,
-- so a reader can tell an event that committed late (with a lower id) from one it saw.
CREATE TABLE pgcue.job_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx         xid8 NOT NULL DEFAULT pg_current_xact_id(),
    job_id     uuid NOT NULL,
    channel_id text NOT NULL,
    owner_id   text,
    kind       text NOT NULL
        CHECK (kind IN ('job:status', 'job:output', 'job:progress', 'stage:updated')),
    data       jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgcue.job_events IS 'Append-only history of every job: status changes, output, progress, stages.';
CREATE INDEX job_events_job_idx ON pgcue.job_events (job_id, id);
CREATE INDEX job_events_channel_idx ON pgcue.job_events (channel_id, id);

-- Worker processes, for "workers seen recently" and to tell a lease holder's host.
CREATE TABLE pgcue.workers (
    id           text PRIMARY KEY,
    hostname     text NOT NULL,
    pid          integer NOT NULL,
    types        text[] NOT NULL,
    concurrency  integer NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    stopped_at   timestamptz
);
COMMENT ON TABLE pgcue.workers IS 'Worker processes, refreshed by their heartbeat.';
