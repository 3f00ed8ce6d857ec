-- The ceiling: the same drain as pgcue's, in PL/pgSQL with no Python in the loop.
-- Claims a batch of queued jobs with SKIP LOCKED (committed), then completes them
-- (committed), until none are left: two commits per batch, like a worker, but with no
-- events, no notifications and no round trips. Run in the benchmark's scratch database.
-- Not fair across channels (pgcue's claim is): this is what PostgreSQL allows for the
-- claim/complete row work alone.
CREATE OR REPLACE PROCEDURE public.bench_ceiling_drain(batch int)
LANGUAGE plpgsql AS $$
DECLARE
    ids uuid[];
BEGIN
    LOOP
        WITH next AS (
            SELECT id FROM pgcue.jobs
            WHERE state = 'queued' AND type = 'bench-noop' AND run_at <= now()
            -- jobs_claim_idx's own order (type, channel_id, priority DESC, run_at): an
            -- index scan that stops after `batch` rows. A global priority order would
            -- sort every queued job of the type for each batch, which is no ceiling.
            ORDER BY channel_id, priority DESC, run_at
            LIMIT batch
            FOR UPDATE SKIP LOCKED
        ), claimed AS (
            UPDATE pgcue.jobs j
            SET state = 'running', attempts = j.attempts + 1, locked_by = 'ceiling',
                lease_expires_at = now() + interval '1 minute', started_at = now(), updated_at = now()
            FROM next WHERE j.id = next.id
            RETURNING j.id
        )
        SELECT array_agg(id) INTO ids FROM claimed;
        EXIT WHEN ids IS NULL;
        COMMIT;
        UPDATE pgcue.jobs
        SET state = 'completed', completed_at = now(), updated_at = now(), progress = 100,
            locked_by = NULL, lease_expires_at = NULL
        WHERE id = ANY(ids) AND state = 'running';
        COMMIT;
    END LOOP;
END $$;
