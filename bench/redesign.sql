-- A prototype of the hot-table redesign (docs/benchmarks.md, "What reaching the targets
-- would take"), measured before anyone builds it: bench/redesign.py drains it in PL/pgSQL
-- beside today's table, in the same scratch database. Not product schema.
--
-- proto.jobs   the job's record: today's row, checks and listing/finished indexes, written
--              at enqueue and once at the end (claims do not touch it).
-- proto.queue  what a claim needs, one row per queued or running job. A claim changes no
--              indexed column (the claim index is not partial on a state), so with room on
--              the page (fillfactor 50) it is a HOT update: no index entry at all. A finish
--              deletes the row.
-- proto.events one row per (statement, channel, kind), its jobs as an array: a batch of 500
--              claims over 16 channels writes 16 event rows, not 500. (The drain below
--              claims in the claim index's order, a few channels per batch; it groups its
--              event rows 16 ways by job instead, the rows a fair claim over 16 channels
--              would write.)
--
-- Both drain procedures here (unlike bench/ceiling.sql's) keep one batch running while
-- they claim the next (claim k, then finish k-1), as a worker that overlaps claims with
-- completions does, so a claim scan passes over running jobs as it would in a worker.
-- Their loops are written out twice on purpose: each statement stays static and is
-- planned once; a shared loop would need EXECUTE, and that would be measured too.

CREATE SCHEMA proto;

CREATE TABLE proto.jobs (LIKE pgcue.jobs INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE proto.jobs ADD PRIMARY KEY (id);
CREATE INDEX proto_jobs_listing_idx ON proto.jobs (channel_id, type, state, created_at DESC, id DESC) INCLUDE (parent_id);
CREATE INDEX proto_jobs_finished_idx ON proto.jobs (completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX proto_jobs_channel_completed_idx ON proto.jobs (channel_id, completed_at DESC, id DESC)
    WHERE state = 'completed';

CREATE TABLE proto.queue (
    id uuid PRIMARY KEY,
    type text NOT NULL,
    channel_id text NOT NULL,
    priority smallint NOT NULL DEFAULT 0,
    run_at timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    locked_by text,
    lease_expires_at timestamptz,
    started_at timestamptz,
    attempts integer NOT NULL DEFAULT 0,
    fence bigint NOT NULL DEFAULT 0
) WITH (fillfactor = 50);
CREATE INDEX proto_queue_claim_idx ON proto.queue (type, channel_id, priority DESC, run_at);
-- The panel's active jobs of a channel (queued and running live here, not in the record's state).
CREATE INDEX proto_queue_channel_idx ON proto.queue (channel_id, created_at DESC, id DESC);

CREATE TABLE proto.events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx xid8 NOT NULL DEFAULT pg_current_xact_id(),
    channel_id text NOT NULL,
    kind text NOT NULL,
    job_ids uuid[] NOT NULL,
    data jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX proto_events_channel_idx ON proto.events (channel_id, id);
CREATE INDEX proto_events_tx_idx ON proto.events (tx);

-- Today's table, with the event row per job that a claim and a completion write.
CREATE PROCEDURE public.bench_today_drain(batch int)
LANGUAGE plpgsql AS $$
DECLARE
    ids uuid[];
    prev uuid[];
BEGIN
    LOOP
        WITH next AS (
            SELECT id FROM pgcue.jobs
            WHERE state = 'queued' AND type = 'bench-noop' AND run_at <= now()
            ORDER BY channel_id, priority DESC, run_at
            LIMIT batch
            FOR UPDATE SKIP LOCKED
        ), claimed AS (
            UPDATE pgcue.jobs j
            SET state = 'running', attempts = j.attempts + 1, locked_by = 'ceiling', fence = j.fence + 1,
                lease_expires_at = now() + interval '1 minute', started_at = now(), updated_at = now()
            FROM next WHERE j.id = next.id
            RETURNING j.id, j.channel_id, j.owner_id, j.attempts, j.max_attempts
        ), events AS (
            INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
            SELECT id, channel_id, owner_id, 'job:status',
                   jsonb_build_object('state', 'running', 'attempt', attempts, 'maxAttempts', max_attempts)
            FROM claimed
        )
        SELECT array_agg(id) INTO ids FROM claimed;
        COMMIT;
        IF prev IS NOT NULL THEN
            WITH done AS (
                UPDATE pgcue.jobs
                SET state = 'completed', completed_at = now(), updated_at = now(), progress = 100,
                    locked_by = NULL, lease_expires_at = NULL
                WHERE id = ANY(prev) AND state = 'running'
                RETURNING id, channel_id, owner_id, state, attempts, result_path, error_message
            )
            INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
            SELECT id, channel_id, owner_id, 'job:status',
                   jsonb_build_object('state', state, 'attempt', attempts,
                                      'resultPath', result_path, 'errorMessage', error_message)
            FROM done;
            COMMIT;
        END IF;
        EXIT WHEN ids IS NULL;
        prev := ids;
    END LOOP;
END $$;

-- The prototype: HOT claims on the narrow queue, the record written once at the end, one
-- event row per channel per statement (per_job_events: today's event row per job instead,
-- to tell the two levers apart).
CREATE PROCEDURE public.bench_proto_drain(batch int, per_job_events boolean)
LANGUAGE plpgsql AS $$
DECLARE
    ids uuid[];
    prev uuid[];
BEGIN
    LOOP
        WITH next AS (
            SELECT id FROM proto.queue
            WHERE type = 'bench-noop' AND run_at <= now() AND locked_by IS NULL
            ORDER BY channel_id, priority DESC, run_at
            LIMIT batch
            FOR UPDATE SKIP LOCKED
        ), claimed AS (
            UPDATE proto.queue q
            SET attempts = q.attempts + 1, locked_by = 'ceiling', fence = q.fence + 1,
                lease_expires_at = now() + interval '1 minute', started_at = now()
            FROM next WHERE q.id = next.id
            RETURNING q.id, q.channel_id, q.attempts
        ), events AS (
            INSERT INTO proto.events (channel_id, kind, job_ids, data)
            SELECT min(channel_id), 'job:status', array_agg(id),
                   jsonb_build_object('state', 'running', 'attempts', jsonb_agg(attempts))
            FROM claimed WHERE NOT per_job_events GROUP BY abs(hashtext(id::text)) % 16
        ), job_events AS (
            INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
            SELECT id, channel_id, 'u', 'job:status',
                   jsonb_build_object('state', 'running', 'attempt', attempts, 'maxAttempts', 3)
            FROM claimed WHERE per_job_events
        )
        SELECT array_agg(id) INTO ids FROM claimed;
        COMMIT;
        IF prev IS NOT NULL THEN
            WITH gone AS (
                DELETE FROM proto.queue WHERE id = ANY(prev) AND locked_by = 'ceiling'
                RETURNING id, attempts, started_at
            ), done AS (
                UPDATE proto.jobs j
                SET state = 'completed', completed_at = now(), updated_at = now(), progress = 100,
                    attempts = gone.attempts, started_at = gone.started_at
                FROM gone WHERE j.id = gone.id
                RETURNING j.id, j.channel_id, j.owner_id, j.state, j.attempts, j.result_path, j.error_message
            ), events AS (
                INSERT INTO proto.events (channel_id, kind, job_ids, data)
                SELECT min(channel_id), 'job:status', array_agg(id), jsonb_build_object('state', 'completed')
                FROM done WHERE NOT per_job_events GROUP BY abs(hashtext(id::text)) % 16
            )
            INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
            SELECT id, channel_id, owner_id, 'job:status',
                   jsonb_build_object('state', state, 'attempt', attempts,
                                      'resultPath', result_path, 'errorMessage', error_message)
            FROM done WHERE per_job_events;
            COMMIT;
        END IF;
        EXIT WHEN ids IS NULL;
        prev := ids;
    END LOOP;
END $$;
