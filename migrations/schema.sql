CREATE SCHEMA pgcue;
CREATE FUNCTION pgcue.cancel_job(job_id uuid) RETURNS TABLE(prev_state text, state text, notified bigint)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
#variable_conflict use_column
DECLARE
    target  uuid := $1;
    before  text;
    after   text;
    parent  uuid;
    chan    text;
    owner   text;
    jtype   text;
    sent    bigint := 0;
BEGIN
    SELECT j.state INTO before FROM pgcue.jobs j WHERE j.id = target;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    WITH cancelled AS (
        UPDATE pgcue.jobs j
        SET cancel_requested = true,
            state = CASE WHEN j.state = 'queued' AND j.handler_state IS NULL THEN 'cancelled' ELSE j.state END,
            completed_at = CASE WHEN j.state = 'queued' AND j.handler_state IS NULL THEN now() END,
            error_message = CASE WHEN j.state = 'queued' AND j.handler_state IS NULL
                                 THEN 'Job cancelled by user request' ELSE j.error_message END,
            run_at = CASE WHEN j.state = 'queued' AND j.handler_state IS NOT NULL
                          THEN least(j.run_at, now()) ELSE j.run_at END,
            updated_at = now()
        WHERE j.id = target AND j.state IN ('queued', 'running')
        RETURNING j.id, j.type, j.channel_id, j.owner_id, j.state, j.attempts, j.error_message, j.parent_id
    ), events AS (
        INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
        SELECT c.id, c.channel_id, c.owner_id, 'job:status',
               jsonb_build_object('state', c.state, 'attempt', c.attempts, 'cancelRequested', true,
                                  'errorMessage', c.error_message)
        FROM cancelled c
    )
    SELECT c.state, c.parent_id, c.channel_id, c.owner_id, c.type INTO after, parent, chan, owner, jtype
    FROM cancelled c;
    IF after IS NULL THEN
        prev_state := before;
        state := NULL;
        notified := NULL;
        RETURN NEXT;
        RETURN;
    END IF;
    -- The run's children: queued ones now (those with outside work by their worker, as
    -- above), running ones at their next checkpoint.
    WITH kids AS (
        UPDATE pgcue.jobs k
        SET cancel_requested = true,
            state = CASE WHEN k.state = 'queued' AND k.handler_state IS NULL THEN 'cancelled' ELSE k.state END,
            completed_at = CASE WHEN k.state = 'queued' AND k.handler_state IS NULL THEN now() END,
            error_message = CASE WHEN k.state = 'queued' AND k.handler_state IS NULL
                                 THEN 'Job cancelled with its pipeline' ELSE k.error_message END,
            run_at = CASE WHEN k.state = 'queued' AND k.handler_state IS NOT NULL
                          THEN least(k.run_at, now()) ELSE k.run_at END,
            updated_at = now()
        WHERE k.parent_id = target AND k.state IN ('queued', 'running')
        RETURNING k.id, k.type, k.channel_id, k.owner_id, k.state, k.attempts, k.error_message
    ), events AS (
        INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
        SELECT k.id, k.channel_id, k.owner_id, 'job:status',
               jsonb_build_object('state', k.state, 'attempt', k.attempts, 'cancelRequested', true,
                                  'errorMessage', k.error_message, 'reason', 'pipeline cancelled')
        FROM kids k
    )
    SELECT count(pg_notify(n.channel, n.payload)) INTO sent
    FROM (SELECT DISTINCT CASE WHEN k.state = 'running' THEN 'pgcue_cancel' ELSE 'pgcue_wake' END AS channel,
                          CASE WHEN k.state = 'running' THEN k.id::text ELSE k.type END AS payload
          FROM kids k WHERE k.state IN ('running', 'queued')) n;
    -- The run's stages: in progress -> cancelled, pending -> skipped; done ones stay.
    WITH st AS (
        UPDATE pgcue.pipeline_stages s
        SET state = CASE WHEN s.state = 'pending' THEN 'skipped' ELSE 'cancelled' END,
            finished_at = now(),
            updated_at = now()
        WHERE s.job_id = target AND s.state IN ('pending', 'running', 'in_review', 'awaiting_approval')
        RETURNING s.job_id, s.position, s.name, s.state, s.iteration
    )
    INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
    SELECT st.job_id, chan, owner, 'stage:updated',
           jsonb_build_object('stage', st.name, 'position', st.position, 'state', st.state,
                              'iteration', st.iteration)
    FROM st ORDER BY st.position;
    -- A queued child cancelled on its own: its parked parent must look at it.
    IF parent IS NOT NULL AND after = 'cancelled' THEN
        WITH w AS (
            UPDATE pgcue.jobs p SET run_at = now(), waiting_for = NULL, updated_at = now()
            WHERE p.id = parent AND p.state = 'queued' AND p.waiting_for = 'children'
            RETURNING p.type
        )
        SELECT sent + count(pg_notify('pgcue_wake', w.type)) INTO sent FROM w;
    END IF;
    PERFORM pg_notify('pgcue_events', '');
    sent := sent + 1;
    IF after = 'running' THEN
        PERFORM pg_notify('pgcue_cancel', target::text);
        sent := sent + 1;
    ELSIF after = 'queued' THEN  -- outside work to stop: a worker of its type must claim it
        PERFORM pg_notify('pgcue_wake', jtype);
        sent := sent + 1;
    END IF;
    prev_state := before;
    state := after;
    notified := sent;
    RETURN NEXT;
END
$_$;
COMMENT ON FUNCTION pgcue.cancel_job(job_id uuid) IS 'Cancel a queued job, or ask a running one (or one whose outside work is in flight) to stop; cascades to a pipeline''s children and stages. Same rules as the API.';
CREATE FUNCTION pgcue.delete_jobs(job_ids uuid[]) RETURNS TABLE(id uuid)
    LANGUAGE sql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
WITH gone AS (
    DELETE FROM pgcue.jobs
    WHERE id = ANY ($1) AND state IN ('completed', 'failed', 'cancelled')
    RETURNING id
), events AS (
    DELETE FROM pgcue.job_events e USING gone WHERE e.job_id = gone.id
)
SELECT gone.id FROM gone
$_$;
COMMENT ON FUNCTION pgcue.delete_jobs(job_ids uuid[]) IS 'Delete finished jobs and their events by id (the API''s DELETE).';
CREATE FUNCTION pgcue.iso_ms(t timestamp with time zone) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO 'pg_catalog', 'pg_temp'
    RETURN to_char((t AT TIME ZONE 'UTC'::text), 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'::text);
COMMENT ON FUNCTION pgcue.iso_ms(t timestamp with time zone) IS 'ISO 8601, UTC, milliseconds, Z: the API''s one timestamp format.';
CREATE FUNCTION pgcue.job_history(job_id uuid) RETURNS TABLE(event_id bigint, at timestamp with time zone, kind text, state text, data jsonb)
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
    SELECT e.id, e.created_at, e.kind, e.data ->> 'state', e.data
    FROM pgcue.job_events e
    WHERE e.job_id = $1
    ORDER BY e.id
$_$;
COMMENT ON FUNCTION pgcue.job_history(job_id uuid) IS 'Every event of one job, oldest first.';
CREATE FUNCTION pgcue.job_type_in_use() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pgcue.jobs WHERE type = OLD.name) THEN
        RAISE EXCEPTION 'job type % still has jobs', OLD.name
            USING ERRCODE = 'foreign_key_violation',
                  HINT = 'delete its jobs first (pgcue.delete_jobs) or keep the type';
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END $$;
CREATE FUNCTION pgcue.jobs_deleted() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    INSERT INTO pgcue.artifact_deletions (job_id, channel_id)
    SELECT g.id, g.channel_id FROM gone g WHERE g.artifact_bytes IS NOT NULL
    ON CONFLICT (job_id) DO NOTHING;
    UPDATE pgcue.channel_storage s
    SET bytes = greatest(0, s.bytes - d.bytes), updated_at = now()
    FROM (SELECT g.channel_id, sum(g.artifact_bytes) AS bytes FROM gone g
          WHERE g.artifact_bytes > 0 GROUP BY g.channel_id) d
    WHERE s.channel_id = d.channel_id;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION pgcue.jobs_deleted() IS 'After a delete of jobs: their artifact folders are queued for removal and their bytes leave the channel''s count.';
CREATE FUNCTION pgcue.purge_jobs(older_than interval DEFAULT '00:00:00'::interval, job_type text DEFAULT NULL::text, job_state text DEFAULT NULL::text) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    total bigint := 0;
    batch bigint;
BEGIN
    IF job_state IS NOT NULL AND job_state NOT IN ('completed', 'failed', 'cancelled') THEN
        RAISE EXCEPTION 'pgcue.purge_jobs: job_state must be completed, failed or cancelled, not %', job_state
            USING HINT = 'queued and running jobs are cancelled, not purged';
    END IF;
    LOOP
        SELECT count(*) INTO batch
        FROM pgcue.delete_jobs(ARRAY(
            SELECT j.id FROM pgcue.jobs j
            WHERE j.completed_at < now() - older_than
              AND (job_type IS NULL OR j.type = job_type)
              AND (job_state IS NULL OR j.state = job_state)
            ORDER BY j.completed_at
            LIMIT 10000
            FOR UPDATE SKIP LOCKED));
        total := total + batch;
        EXIT WHEN batch < 10000;
    END LOOP;
    RETURN total;
END
$$;
COMMENT ON FUNCTION pgcue.purge_jobs(older_than interval, job_type text, job_state text) IS 'Delete finished jobs older than an age (optionally one type / state); returns how many.';
CREATE FUNCTION pgcue.resume_pipeline(job_id uuid, approve boolean, feedback text DEFAULT NULL::text, decided_by text DEFAULT NULL::text) RETURNS TABLE(stage text, stage_state text, iteration integer, notified bigint)
    LANGUAGE sql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
WITH st AS (
    UPDATE pgcue.pipeline_stages s
    SET state = CASE WHEN $2 THEN 'done' ELSE 'pending' END,
        result = CASE WHEN $2 THEN s.result END,
        result_path = CASE WHEN $2 THEN s.result_path END,
        feedback = s.feedback || jsonb_build_array(jsonb_build_object(
            'iteration', s.iteration, 'by', 'person', 'user', $4, 'passed', $2,
            'feedback', coalesce($3, ''), 'at', pgcue.iso_ms(now()))),
        finished_at = CASE WHEN $2 THEN now() END,
        updated_at = now()
    WHERE s.job_id = $1 AND s.state = 'awaiting_approval'
    RETURNING s.job_id, s.position, s.name, s.state, s.iteration
), woken AS (
    UPDATE pgcue.jobs j
    SET run_at = now(), waiting_for = NULL, updated_at = now()
    FROM st
    WHERE j.id = st.job_id AND j.state = 'queued' AND j.waiting_for = 'approval'
    RETURNING j.id, j.type, j.channel_id, j.owner_id
), events AS (
    INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
    SELECT st.job_id, j.channel_id, j.owner_id, 'stage:updated',
           jsonb_build_object('stage', st.name, 'position', st.position, 'state', st.state,
                              'iteration', st.iteration, 'decision', CASE WHEN $2 THEN 'approve' ELSE 'reject' END,
                              'feedback', left(coalesce($3, ''), 200))
    FROM st JOIN pgcue.jobs j ON j.id = st.job_id
)
SELECT st.name, st.state, st.iteration,
       (SELECT count(pg_notify(n.channel, n.payload))
        FROM (SELECT 'pgcue_events' AS channel, '' AS payload
              UNION ALL
              SELECT 'pgcue_wake', type FROM woken) n) AS notified
FROM st
$_$;
COMMENT ON FUNCTION pgcue.resume_pipeline(job_id uuid, approve boolean, feedback text, decided_by text) IS 'Approve (true) or reject with feedback (false) the stage a pipeline run waits on; wakes the run.';
CREATE FUNCTION pgcue.retry_job(job_id uuid) RETURNS TABLE(prev_state text, state text, notified bigint)
    LANGUAGE sql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
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
$_$;
COMMENT ON FUNCTION pgcue.retry_job(job_id uuid) IS 'Put a failed or cancelled job back in the queue with fresh attempts and no outside work; same rules as the API.';
CREATE FUNCTION pgcue.set_channel_paused(channel text, pause boolean, why text DEFAULT ''::text) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
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
COMMENT ON FUNCTION pgcue.set_channel_paused(channel text, pause boolean, why text) IS 'Pause (true) or resume (false) claims of every job in a channel. Running jobs finish.';
CREATE FUNCTION pgcue.set_type_paused(job_type text, pause boolean) RETURNS boolean
    LANGUAGE sql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    UPDATE pgcue.job_types SET paused = pause, updated_at = now() WHERE name = job_type RETURNING true;
$$;
COMMENT ON FUNCTION pgcue.set_type_paused(job_type text, pause boolean) IS 'Pause (true) or resume (false) claims of a job type; NULL if there is no such type. Running jobs finish.';
CREATE FUNCTION pgcue.unknown_job_type(asked text) RETURNS text
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION 'unknown job type %', asked
        USING ERRCODE = 'foreign_key_violation',
              HINT = 'register it: run its worker or `pgcue migrate`; `pgcue types` lists the known ones';
END $$;
COMMENT ON FUNCTION pgcue.unknown_job_type(asked text) IS 'enqueue_jobs: raises foreign_key_violation; called as coalesce(job_types.name, unknown_job_type(type)), so only for a type with no row.';
CREATE TABLE pgcue.api_keys (
    id bigint NOT NULL,
    token_hash bytea NOT NULL,
    user_id text NOT NULL,
    admin boolean DEFAULT false NOT NULL,
    label text DEFAULT ''::text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    revoked_at timestamp with time zone,
    CONSTRAINT api_keys_token_hash_check CHECK ((length(token_hash) = 32))
);
COMMENT ON TABLE pgcue.api_keys IS 'Bearer keys: sha256(token) only; an admin key sees every channel.';
ALTER TABLE pgcue.api_keys ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgcue.api_keys_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE TABLE pgcue.artifact_deletions (
    job_id uuid NOT NULL,
    channel_id text NOT NULL,
    deleted_at timestamp with time zone DEFAULT now() NOT NULL
);
COMMENT ON TABLE pgcue.artifact_deletions IS 'Artifact folders of deleted jobs, waiting for the maintenance leader.';
CREATE TABLE pgcue.channel_storage (
    channel_id text NOT NULL,
    bytes bigint DEFAULT 0 NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT channel_storage_bytes_check CHECK ((bytes >= 0))
);
COMMENT ON TABLE pgcue.channel_storage IS 'Bytes of artifacts each channel keeps (PGCUE_ARTIFACT_QUOTA_BYTES).';
CREATE TABLE pgcue.channels (
    id text NOT NULL,
    owner_id text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT channels_id_check CHECK (((length(id) >= 1) AND (length(id) <= 200)))
);
COMMENT ON TABLE pgcue.channels IS 'Channels and their owner: a caller sees the jobs of its own channels only.';
CREATE TABLE pgcue.job_events (
    id bigint NOT NULL,
    tx xid8 DEFAULT pg_current_xact_id() NOT NULL,
    job_id uuid NOT NULL,
    channel_id text NOT NULL,
    owner_id text,
    kind text NOT NULL,
    data jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT job_events_kind_check CHECK ((kind = ANY (ARRAY['job:status'::text, 'job:output'::text, 'job:progress'::text, 'stage:updated'::text, 'proposals:updated'::text])))
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
    global_concurrency integer,
    channel_concurrency integer,
    rate_limit integer,
    rate_period_seconds integer DEFAULT 60 NOT NULL,
    paused boolean DEFAULT false NOT NULL,
    payload_schema jsonb,
    CONSTRAINT job_types_channel_concurrency_check CHECK ((channel_concurrency >= 1)),
    CONSTRAINT job_types_concurrency_check CHECK (((concurrency >= 1) AND (concurrency <= 10000))),
    CONSTRAINT job_types_global_concurrency_check CHECK ((global_concurrency >= 1)),
    CONSTRAINT job_types_lease_seconds_check CHECK (((lease_seconds >= 1) AND (lease_seconds <= 86400))),
    CONSTRAINT job_types_max_attempts_check CHECK (((max_attempts >= 1) AND (max_attempts <= 100))),
    CONSTRAINT job_types_memory_mb_check CHECK ((memory_mb > 0)),
    CONSTRAINT job_types_name_check CHECK ((name ~ '^[a-z][a-z0-9_-]{0,62}$'::text)),
    CONSTRAINT job_types_payload_schema_check CHECK (((payload_schema IS NULL) OR (jsonb_typeof(payload_schema) = 'object'::text))),
    CONSTRAINT job_types_plan_check CHECK ((plan = ANY (ARRAY['free'::text, 'paid'::text]))),
    CONSTRAINT job_types_rate_limit_check CHECK ((rate_limit >= 1)),
    CONSTRAINT job_types_rate_period_seconds_check CHECK (((rate_period_seconds >= 1) AND (rate_period_seconds <= 86400))),
    CONSTRAINT job_types_timeout_seconds_check CHECK (((timeout_seconds >= 1) AND (timeout_seconds <= 604800)))
);
COMMENT ON TABLE pgcue.job_types IS 'Job types and their per-type settings (seed 002 worker table).';
COMMENT ON COLUMN pgcue.job_types.global_concurrency IS 'Most jobs of this type running at once across the whole fleet.';
COMMENT ON COLUMN pgcue.job_types.channel_concurrency IS 'Most jobs of this type running at once in one channel.';
COMMENT ON COLUMN pgcue.job_types.rate_limit IS 'Most starts of this type per rate_period_seconds (sliding window).';
COMMENT ON COLUMN pgcue.job_types.paused IS 'Paused: no claims; running jobs finish.';
COMMENT ON COLUMN pgcue.job_types.payload_schema IS 'JSON Schema of the type''s payload (registered by its workers); every enqueue is checked against it.';
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
    unique_key text,
    parent_id uuid,
    waiting_for text,
    fence bigint DEFAULT 0 NOT NULL,
    artifact_bytes bigint,
    handler_state jsonb,
    parked boolean DEFAULT false NOT NULL,
    CONSTRAINT jobs_artifact_bytes_check CHECK ((artifact_bytes >= 0)),
    CONSTRAINT jobs_attempts_within_max CHECK (((attempts >= 0) AND (attempts <= max_attempts))),
    CONSTRAINT jobs_cancelled_was_requested CHECK (((state <> 'cancelled'::text) OR cancel_requested)),
    CONSTRAINT jobs_channel_id_check CHECK (((length(channel_id) >= 1) AND (length(channel_id) <= 200))),
    CONSTRAINT jobs_completed_has_no_error CHECK (((state <> 'completed'::text) OR (error_message IS NULL))),
    CONSTRAINT jobs_errors_is_array CHECK ((jsonb_typeof(errors) = 'array'::text)),
    CONSTRAINT jobs_finished_has_completed_at CHECK (((state = ANY (ARRAY['completed'::text, 'failed'::text, 'cancelled'::text])) = (completed_at IS NOT NULL))),
    CONSTRAINT jobs_handler_state_object CHECK (((handler_state IS NULL) OR (jsonb_typeof(handler_state) = 'object'::text))),
    CONSTRAINT jobs_idempotency_key_check CHECK (((length(idempotency_key) >= 1) AND (length(idempotency_key) <= 200))),
    CONSTRAINT jobs_lease_iff_running CHECK (((state = 'running'::text) = ((locked_by IS NOT NULL) AND (lease_expires_at IS NOT NULL)))),
    CONSTRAINT jobs_max_attempts_range CHECK (((max_attempts >= 1) AND (max_attempts <= 100))),
    CONSTRAINT jobs_owner_id_check CHECK (((length(owner_id) >= 1) AND (length(owner_id) <= 200))),
    CONSTRAINT jobs_progress_range CHECK (((progress >= 0) AND (progress <= 100))),
    CONSTRAINT jobs_running_has_started_at CHECK (((state <> 'running'::text) OR ((started_at IS NOT NULL) AND (attempts >= 1)))),
    CONSTRAINT jobs_state_valid CHECK ((state = ANY (ARRAY['queued'::text, 'running'::text, 'completed'::text, 'failed'::text, 'cancelled'::text]))),
    CONSTRAINT jobs_unique_key_check CHECK (((length(unique_key) >= 1) AND (length(unique_key) <= 200))),
    CONSTRAINT jobs_waiting_for_valid CHECK ((waiting_for = ANY (ARRAY['children'::text, 'approval'::text, 'provider'::text])))
);
COMMENT ON TABLE pgcue.jobs IS 'One row per job: the single source of truth of the queue.';
COMMENT ON COLUMN pgcue.jobs.priority IS 'Higher runs first; ties run oldest run_at first.';
COMMENT ON COLUMN pgcue.jobs.attempts IS 'Attempts started so far; the running attempt''s number, used to fence a worker''s writes.';
COMMENT ON COLUMN pgcue.jobs.errors IS 'Per-attempt error history: [{attempt, at, error, kind}]';
COMMENT ON COLUMN pgcue.jobs.parent_id IS 'The pipeline run (orchestrate job) this job works for; NULL for a job of its own. No foreign key: pruning deletes finished runs and children independently.';
COMMENT ON COLUMN pgcue.jobs.waiting_for IS 'A parked job: children (a pipeline run''s stage job runs), approval (a person must decide) or provider (outside work, polled at run_at). Meaningful while queued.';
COMMENT ON COLUMN pgcue.jobs.fence IS 'Claims so far, never reset: the token every write of the claiming worker is fenced by.';
COMMENT ON COLUMN pgcue.jobs.artifact_bytes IS 'NULL: no artifact folder; else the bytes of the job''s published artifacts.';
COMMENT ON COLUMN pgcue.jobs.handler_state IS 'Outside work the job''s handler started (a provider''s prediction id, its idempotency key), kept across parks, retries and rescues; NULL: none. A person''s retry clears it.';
COMMENT ON COLUMN pgcue.jobs.parked IS 'The job has parked (a pipeline run between its moves) since it was enqueued or retried: its later claims continue the run and keep started_at.';
CREATE TABLE pgcue.paused_channels (
    channel_id text NOT NULL,
    paused_at timestamp with time zone DEFAULT now() NOT NULL,
    reason text DEFAULT ''::text NOT NULL
);
CREATE TABLE pgcue.pipeline_stages (
    job_id uuid NOT NULL,
    "position" integer NOT NULL,
    name text NOT NULL,
    spec jsonb NOT NULL,
    state text DEFAULT 'pending'::text NOT NULL,
    iteration integer DEFAULT 0 NOT NULL,
    feedback jsonb DEFAULT '[]'::jsonb NOT NULL,
    child_id uuid,
    review_child_id uuid,
    result jsonb,
    result_path text,
    started_at timestamp with time zone,
    finished_at timestamp with time zone,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT pipeline_stages_feedback_check CHECK ((jsonb_typeof(feedback) = 'array'::text)),
    CONSTRAINT pipeline_stages_iteration_check CHECK ((iteration >= 0)),
    CONSTRAINT pipeline_stages_name_check CHECK (((length(name) >= 1) AND (length(name) <= 100))),
    CONSTRAINT pipeline_stages_position_check CHECK (("position" >= 0)),
    CONSTRAINT pipeline_stages_state_valid CHECK ((state = ANY (ARRAY['pending'::text, 'running'::text, 'in_review'::text, 'awaiting_approval'::text, 'done'::text, 'failed'::text, 'skipped'::text, 'cancelled'::text])))
);
COMMENT ON TABLE pgcue.pipeline_stages IS 'The stages of each pipeline run, with their state, iterations, feedback and artifacts.';
COMMENT ON COLUMN pgcue.pipeline_stages.feedback IS 'Review history: [{iteration, by (reviewer|person), passed, feedback, at}], oldest first.';
COMMENT ON COLUMN pgcue.pipeline_stages.child_id IS 'The work job of the current (or last) iteration.';
COMMENT ON COLUMN pgcue.pipeline_stages.result IS 'The stage''s artifact: set only once its work passed review.';
CREATE VIEW pgcue.pipeline_runs AS
 SELECT j.id,
    j.channel_id,
    (j.payload ->> 'pipeline'::text) AS pipeline,
    j.state,
        CASE
            WHEN (j.state = 'queued'::text) THEN j.waiting_for
            ELSE NULL::text
        END AS waiting_for,
    cur.name AS current_stage,
    cur.state AS stage_state,
    cur.iteration,
    ( SELECT count(*) AS count
           FROM pgcue.pipeline_stages s
          WHERE ((s.job_id = j.id) AND (s.state = 'done'::text))) AS stages_done,
    ( SELECT count(*) AS count
           FROM pgcue.pipeline_stages s
          WHERE (s.job_id = j.id)) AS stages,
    j.error_message,
    j.created_at,
    j.updated_at
   FROM (pgcue.jobs j
     LEFT JOIN LATERAL ( SELECT s.name,
            s.state,
            s.iteration
           FROM pgcue.pipeline_stages s
          WHERE ((s.job_id = j.id) AND (s.state <> 'done'::text))
          ORDER BY s."position"
         LIMIT 1) cur ON (true))
  WHERE (j.type = 'orchestrate'::text)
  ORDER BY j.created_at DESC;
COMMENT ON VIEW pgcue.pipeline_runs IS 'Pipeline runs: state, what a parked run waits for (children or approval), current stage, stages done.';
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
CREATE VIEW pgcue.queue_overview AS
 SELECT t.name AS type,
    count(j.id) FILTER (WHERE ((j.state = 'queued'::text) AND (j.run_at <= now()))) AS runnable,
    count(j.id) FILTER (WHERE ((j.state = 'queued'::text) AND (j.run_at > now()))) AS scheduled,
    count(j.id) FILTER (WHERE (j.state = 'running'::text)) AS running,
    count(j.id) FILTER (WHERE (j.state = 'completed'::text)) AS completed,
    count(j.id) FILTER (WHERE (j.state = 'failed'::text)) AS failed,
    count(j.id) FILTER (WHERE (j.state = 'cancelled'::text)) AS cancelled,
    date_trunc('second'::text, (now() - min(j.run_at) FILTER (WHERE ((j.state = 'queued'::text) AND (j.run_at <= now()))))) AS oldest_runnable_age,
    t.concurrency AS concurrency_per_worker,
    ( SELECT count(*) AS count
           FROM pgcue.workers w
          WHERE ((t.name = ANY (w.types)) AND (w.stopped_at IS NULL))) AS workers
   FROM (pgcue.job_types t
     LEFT JOIN pgcue.jobs j ON ((j.type = t.name)))
  GROUP BY t.name, t.concurrency;
COMMENT ON VIEW pgcue.queue_overview IS 'Per job type: jobs by state (queued split into runnable and scheduled), oldest runnable age, workers not stopped.';
CREATE TABLE pgcue.rate_starts (
    type text NOT NULL,
    started_at timestamp with time zone DEFAULT now() NOT NULL
);
CREATE VIEW pgcue.recent_failures AS
 SELECT j.id,
    j.type,
    j.channel_id,
    ((e.value ->> 'attempt'::text))::integer AS attempt,
    j.max_attempts,
    ((e.value ->> 'at'::text))::timestamp with time zone AS failed_at,
    (e.value ->> 'kind'::text) AS kind,
    (e.value ->> 'error'::text) AS error,
    j.state AS job_state
   FROM (pgcue.jobs j
     CROSS JOIN LATERAL jsonb_array_elements(j.errors) e(value))
  WHERE (j.errors <> '[]'::jsonb)
  ORDER BY ((e.value ->> 'at'::text))::timestamp with time zone DESC;
COMMENT ON VIEW pgcue.recent_failures IS 'One row per failed attempt (error, kind, when) with the job''s current state, newest first.';
CREATE VIEW pgcue.running_jobs AS
 SELECT j.id,
    j.type,
    j.channel_id,
    j.attempts AS attempt,
    j.max_attempts,
    j.locked_by AS worker,
    w.hostname,
    w.pid,
    date_trunc('second'::text, j.started_at) AS started_at,
    date_trunc('second'::text, (now() - j.started_at)) AS running_for,
    date_trunc('second'::text, (j.lease_expires_at - now())) AS lease_left,
    j.progress,
    j.progress_message,
    j.stage,
    j.cancel_requested
   FROM (pgcue.jobs j
     LEFT JOIN pgcue.workers w ON ((w.id = j.locked_by)))
  WHERE (j.state = 'running'::text)
  ORDER BY j.started_at;
COMMENT ON VIEW pgcue.running_jobs IS 'Running jobs with their worker (host, pid) and the time left on their lease.';
CREATE TABLE pgcue.schedules (
    name text NOT NULL,
    cron text NOT NULL,
    type text NOT NULL,
    channel_id text NOT NULL,
    payload jsonb DEFAULT '{}'::jsonb NOT NULL,
    priority smallint DEFAULT 0 NOT NULL,
    catch_up boolean DEFAULT false NOT NULL,
    paused boolean DEFAULT false NOT NULL,
    next_run_at timestamp with time zone NOT NULL,
    last_run_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT schedules_name_check CHECK (((length(name) >= 1) AND (length(name) <= 200)))
);
COMMENT ON COLUMN pgcue.schedules.catch_up IS 'After downtime: true enqueues every missed tick, false only the next one.';
CREATE TABLE pgcue.schema_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);
CREATE TABLE pgcue.sessions (
    token_hash bytea NOT NULL,
    key_id bigint NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    CONSTRAINT sessions_token_hash_check CHECK ((length(token_hash) = 32))
);
COMMENT ON TABLE pgcue.sessions IS 'Panel sign-ins: sha256(session token) only, each acting with its API key''s rights until expires_at or logout.';
CREATE VIEW pgcue.stuck_jobs AS
 SELECT j.id,
    j.type,
    j.channel_id,
    j.attempts AS attempt,
    j.max_attempts,
    j.locked_by AS worker,
    w.hostname,
    w.pid,
    date_trunc('second'::text, (now() - j.lease_expires_at)) AS lease_expired_for,
    date_trunc('second'::text, (now() - w.last_seen_at)) AS worker_last_seen,
    w.stopped_at AS worker_stopped_at
   FROM (pgcue.jobs j
     LEFT JOIN pgcue.workers w ON ((w.id = j.locked_by)))
  WHERE ((j.state = 'running'::text) AND (j.lease_expires_at < now()))
  ORDER BY j.lease_expires_at;
COMMENT ON VIEW pgcue.stuck_jobs IS 'Running jobs whose lease expired (worker dead or stalled), oldest first.';
CREATE VIEW pgcue.type_policies AS
 SELECT t.name AS type,
    t.plan,
    t.paused,
    t.concurrency AS per_process_concurrency,
    t.global_concurrency,
    t.channel_concurrency,
    t.rate_limit,
    t.rate_period_seconds,
    ( SELECT count(*) AS count
           FROM pgcue.jobs j
          WHERE ((j.state = 'running'::text) AND (j.type = t.name))) AS running,
    ( SELECT count(*) AS count
           FROM pgcue.jobs j
          WHERE ((j.state = 'queued'::text) AND (j.type = t.name))) AS queued,
    ( SELECT count(*) AS count
           FROM pgcue.rate_starts s
          WHERE ((s.type = t.name) AND (s.started_at > (now() - make_interval(secs => (t.rate_period_seconds)::double precision))))) AS starts_in_window
   FROM pgcue.job_types t
  ORDER BY t.name;
COMMENT ON VIEW pgcue.type_policies IS 'Per type: pause, limits, and running/queued/started against them.';
CREATE TABLE pgcue.users (
    id text NOT NULL,
    plan text DEFAULT 'free'::text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT users_id_check CHECK (((length(id) >= 1) AND (length(id) <= 200))),
    CONSTRAINT users_plan_check CHECK ((plan = ANY (ARRAY['free'::text, 'paid'::text])))
);
COMMENT ON TABLE pgcue.users IS 'API users; the plan gates job types (job_types.plan).';
ALTER TABLE ONLY pgcue.api_keys
    ADD CONSTRAINT api_keys_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgcue.api_keys
    ADD CONSTRAINT api_keys_token_hash_key UNIQUE (token_hash);
ALTER TABLE ONLY pgcue.artifact_deletions
    ADD CONSTRAINT artifact_deletions_pkey PRIMARY KEY (job_id);
ALTER TABLE ONLY pgcue.channel_storage
    ADD CONSTRAINT channel_storage_pkey PRIMARY KEY (channel_id);
ALTER TABLE ONLY pgcue.channels
    ADD CONSTRAINT channels_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgcue.job_events
    ADD CONSTRAINT job_events_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgcue.job_types
    ADD CONSTRAINT job_types_pkey PRIMARY KEY (name);
ALTER TABLE ONLY pgcue.jobs
    ADD CONSTRAINT jobs_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgcue.paused_channels
    ADD CONSTRAINT paused_channels_pkey PRIMARY KEY (channel_id);
ALTER TABLE ONLY pgcue.pipeline_stages
    ADD CONSTRAINT pipeline_stages_job_id_name_key UNIQUE (job_id, name);
ALTER TABLE ONLY pgcue.pipeline_stages
    ADD CONSTRAINT pipeline_stages_pkey PRIMARY KEY (job_id, "position");
ALTER TABLE ONLY pgcue.schedules
    ADD CONSTRAINT schedules_pkey PRIMARY KEY (name);
ALTER TABLE ONLY pgcue.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);
ALTER TABLE ONLY pgcue.sessions
    ADD CONSTRAINT sessions_pkey PRIMARY KEY (token_hash);
ALTER TABLE ONLY pgcue.users
    ADD CONSTRAINT users_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgcue.workers
    ADD CONSTRAINT workers_pkey PRIMARY KEY (id);
CREATE INDEX channels_owner_idx ON pgcue.channels USING btree (owner_id);
CREATE INDEX job_events_channel_idx ON pgcue.job_events USING btree (channel_id, id);
CREATE INDEX job_events_job_idx ON pgcue.job_events USING btree (job_id, id);
CREATE INDEX job_events_tx_idx ON pgcue.job_events USING btree (tx);
CREATE INDEX jobs_channel_completed_idx ON pgcue.jobs USING btree (channel_id, completed_at DESC, id DESC) WHERE (state = 'completed'::text);
CREATE INDEX jobs_channel_type_state_idx ON pgcue.jobs USING btree (channel_id, type, state, created_at DESC, id DESC) INCLUDE (parent_id);
CREATE INDEX jobs_claim_idx ON pgcue.jobs USING btree (type, channel_id, priority DESC, run_at) WHERE (state = 'queued'::text);
CREATE INDEX jobs_errors_idx ON pgcue.jobs USING btree (completed_at DESC) WHERE (errors <> '[]'::jsonb);
CREATE INDEX jobs_finished_idx ON pgcue.jobs USING btree (completed_at) WHERE (completed_at IS NOT NULL);
CREATE UNIQUE INDEX jobs_idempotency_idx ON pgcue.jobs USING btree (COALESCE(owner_id, ''::text), idempotency_key) WHERE (idempotency_key IS NOT NULL);
CREATE INDEX jobs_outside_work_idx ON pgcue.jobs USING btree (type, channel_id) WHERE ((handler_state IS NOT NULL) AND (state = ANY (ARRAY['queued'::text, 'running'::text])));
CREATE INDEX jobs_parent_idx ON pgcue.jobs USING btree (parent_id) WHERE (parent_id IS NOT NULL);
CREATE INDEX jobs_running_idx ON pgcue.jobs USING btree (type, channel_id) WHERE (state = 'running'::text);
CREATE UNIQUE INDEX jobs_unique_active_idx ON pgcue.jobs USING btree (type, channel_id, unique_key) WHERE ((unique_key IS NOT NULL) AND (state = ANY (ARRAY['queued'::text, 'running'::text])));
CREATE INDEX rate_starts_type_idx ON pgcue.rate_starts USING btree (type, started_at);
CREATE INDEX schedules_due_idx ON pgcue.schedules USING btree (next_run_at) WHERE (NOT paused);
CREATE INDEX sessions_expires_idx ON pgcue.sessions USING btree (expires_at);
CREATE INDEX sessions_key_idx ON pgcue.sessions USING btree (key_id);
CREATE TRIGGER job_types_in_use BEFORE DELETE OR UPDATE OF name ON pgcue.job_types FOR EACH ROW EXECUTE FUNCTION pgcue.job_type_in_use();
CREATE TRIGGER jobs_deleted AFTER DELETE ON pgcue.jobs REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION pgcue.jobs_deleted();
ALTER TABLE ONLY pgcue.api_keys
    ADD CONSTRAINT api_keys_user_id_fkey FOREIGN KEY (user_id) REFERENCES pgcue.users(id) ON DELETE CASCADE;
ALTER TABLE ONLY pgcue.channels
    ADD CONSTRAINT channels_owner_id_fkey FOREIGN KEY (owner_id) REFERENCES pgcue.users(id) ON DELETE CASCADE;
ALTER TABLE ONLY pgcue.rate_starts
    ADD CONSTRAINT rate_starts_type_fkey FOREIGN KEY (type) REFERENCES pgcue.job_types(name) ON DELETE CASCADE;
ALTER TABLE ONLY pgcue.schedules
    ADD CONSTRAINT schedules_type_fkey FOREIGN KEY (type) REFERENCES pgcue.job_types(name);
ALTER TABLE ONLY pgcue.sessions
    ADD CONSTRAINT sessions_key_id_fkey FOREIGN KEY (key_id) REFERENCES pgcue.api_keys(id) ON DELETE CASCADE;
