CREATE SCHEMA pgcue;
CREATE TABLE pgcue.job_events (
    id bigint NOT NULL,
    tx xid8 DEFAULT pg_current_xact_id() NOT NULL,
    job_id uuid NOT NULL,
    channel_id text NOT NULL,
    owner_id text,
    kind text NOT NULL,
    data jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT job_events_kind_check CHECK ((kind = ANY (ARRAY['job:status'::text, 'job:output'::text, 'job:progress'::text, 'stage:updated'::text])))
);
COMMENT ON TABLE pgcue.job_events IS 'Append-only history of every job: status changes, output, progress, stages.';
ALTER TABLE pgcue.job_events ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgcue.job_events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE TABLE pgcue.job_types (
    name text NOT NULL,
    plan text DEFAULT 'free'::text NOT NULL,
    concurrency integer DEFAULT 1 NOT NULL,
    memory_mb integer,
    lease_seconds integer DEFAULT 60 NOT NULL,
    timeout_seconds integer DEFAULT 3600 NOT NULL,
    max_attempts integer DEFAULT 3 NOT NULL,
    description text DEFAULT ''::text NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT job_types_concurrency_check CHECK (((concurrency >= 1) AND (concurrency <= 10000))),
    CONSTRAINT job_types_lease_seconds_check CHECK (((lease_seconds >= 1) AND (lease_seconds <= 86400))),
    CONSTRAINT job_types_max_attempts_check CHECK (((max_attempts >= 1) AND (max_attempts <= 100))),
    CONSTRAINT job_types_memory_mb_check CHECK ((memory_mb > 0)),
    CONSTRAINT job_types_name_check CHECK ((name ~ '^[a-z][a-z0-9_-]{0,62}$'::text)),
    CONSTRAINT job_types_plan_check CHECK ((plan = ANY (ARRAY['free'::text, 'paid'::text]))),
    CONSTRAINT job_types_timeout_seconds_check CHECK (((timeout_seconds >= 1) AND (timeout_seconds <= 604800)))
);
COMMENT ON TABLE pgcue.job_types IS 'Job types and their per-type settings (seed 002 worker table).';
CREATE TABLE pgcue.jobs (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    type text NOT NULL,
    channel_id text NOT NULL,
    owner_id text,
    state text DEFAULT 'queued'::text NOT NULL,
    priority smallint DEFAULT 0 NOT NULL,
    payload jsonb DEFAULT '{}'::jsonb NOT NULL,
    run_at timestamp with time zone DEFAULT now() NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    max_attempts integer DEFAULT 3 NOT NULL,
    cancel_requested boolean DEFAULT false NOT NULL,
    result jsonb,
    result_path text,
    error_message text,
    errors jsonb DEFAULT '[]'::jsonb NOT NULL,
    progress smallint DEFAULT 0 NOT NULL,
    progress_message text,
    stage text,
    locked_by text,
    lease_expires_at timestamp with time zone,
    idempotency_key text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    started_at timestamp with time zone,
    completed_at timestamp with time zone,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT jobs_attempts_within_max CHECK (((attempts >= 0) AND (attempts <= max_attempts))),
    CONSTRAINT jobs_cancelled_was_requested CHECK (((state <> 'cancelled'::text) OR cancel_requested)),
    CONSTRAINT jobs_channel_id_check CHECK (((length(channel_id) >= 1) AND (length(channel_id) <= 200))),
    CONSTRAINT jobs_completed_has_no_error CHECK (((state <> 'completed'::text) OR (error_message IS NULL))),
    CONSTRAINT jobs_errors_is_array CHECK ((jsonb_typeof(errors) = 'array'::text)),
    CONSTRAINT jobs_finished_has_completed_at CHECK (((state = ANY (ARRAY['completed'::text, 'failed'::text, 'cancelled'::text])) = (completed_at IS NOT NULL))),
    CONSTRAINT jobs_idempotency_key_check CHECK (((length(idempotency_key) >= 1) AND (length(idempotency_key) <= 200))),
    CONSTRAINT jobs_lease_iff_running CHECK (((state = 'running'::text) = ((locked_by IS NOT NULL) AND (lease_expires_at IS NOT NULL)))),
    CONSTRAINT jobs_max_attempts_range CHECK (((max_attempts >= 1) AND (max_attempts <= 100))),
    CONSTRAINT jobs_owner_id_check CHECK (((length(owner_id) >= 1) AND (length(owner_id) <= 200))),
    CONSTRAINT jobs_progress_range CHECK (((progress >= 0) AND (progress <= 100))),
    CONSTRAINT jobs_running_has_started_at CHECK (((state <> 'running'::text) OR ((started_at IS NOT NULL) AND (attempts >= 1)))),
    CONSTRAINT jobs_state_valid CHECK ((state = ANY (ARRAY['queued'::text, 'running'::text, 'completed'::text, 'failed'::text, 'cancelled'::text])))
);
COMMENT ON TABLE pgcue.jobs IS 'One row per job: the single source of truth of the queue.';
COMMENT ON COLUMN pgcue.jobs.priority IS 'Higher runs first; ties run oldest run_at first.';
COMMENT ON COLUMN pgcue.jobs.attempts IS 'Attempts started so far; the running attempt''s number, used to fence a worker''s writes.';
COMMENT ON COLUMN pgcue.jobs.errors IS 'Per-attempt error history: [{attempt, at, error, kind}]';
CREATE TABLE pgcue.schema_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);
CREATE TABLE pgcue.workers (
    id text NOT NULL,
    hostname text NOT NULL,
    pid integer NOT NULL,
    types text[] NOT NULL,
    concurrency integer NOT NULL,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    last_seen_at timestamp with time zone DEFAULT now() NOT NULL,
    stopped_at timestamp with time zone
);
COMMENT ON TABLE pgcue.workers IS 'Worker processes, refreshed by their heartbeat.';
ALTER TABLE ONLY pgcue.job_events
    ADD CONSTRAINT job_events_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgcue.job_types
    ADD CONSTRAINT job_types_pkey PRIMARY KEY (name);
ALTER TABLE ONLY pgcue.jobs
    ADD CONSTRAINT jobs_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgcue.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);
ALTER TABLE ONLY pgcue.workers
    ADD CONSTRAINT workers_pkey PRIMARY KEY (id);
CREATE INDEX job_events_channel_idx ON pgcue.job_events USING btree (channel_id, id);
CREATE INDEX job_events_job_idx ON pgcue.job_events USING btree (job_id, id);
CREATE INDEX jobs_channel_idx ON pgcue.jobs USING btree (channel_id, created_at DESC, id DESC);
CREATE INDEX jobs_claim_idx ON pgcue.jobs USING btree (type, priority DESC, run_at) WHERE (state = 'queued'::text);
CREATE INDEX jobs_finished_idx ON pgcue.jobs USING btree (completed_at) WHERE (completed_at IS NOT NULL);
CREATE UNIQUE INDEX jobs_idempotency_idx ON pgcue.jobs USING btree (COALESCE(owner_id, ''::text), idempotency_key) WHERE (idempotency_key IS NOT NULL);
CREATE INDEX jobs_running_idx ON pgcue.jobs USING btree (locked_by) WHERE (state = 'running'::text);
ALTER TABLE ONLY pgcue.jobs
    ADD CONSTRAINT jobs_type_fkey FOREIGN KEY (type) REFERENCES pgcue.job_types(name);
