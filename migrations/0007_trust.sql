-- pgcue 0007: fences that never repeat, uniqueness per channel, artifacts that go with
-- their jobs, payload schemas, and one timestamp format.

-- --- fencing ------------------------------------------------------------------------------
-- A worker's writes about a job were fenced by `attempts`, which a retry resets to 0: a
-- worker that lost attempt 1 before the retry matched the new attempt 1 and could
-- overwrite its outcome. `fence` counts claims and is never reset or decremented, so each
-- claim's token is new (claim_jobs.sql sets it, every worker write names it).
ALTER TABLE pgcue.jobs ADD COLUMN fence bigint NOT NULL DEFAULT 0;
COMMENT ON COLUMN pgcue.jobs.fence IS
    'Claims so far, never reset: the token every write of the claiming worker is fenced by.';

-- --- unique jobs, per channel ------------------------------------------------------------
-- (type, unique_key) was unique across every tenant, so another tenant's key answered with
-- their job. The key now belongs to the channel: a conflict can only name a job the
-- caller may see.
DROP INDEX pgcue.jobs_unique_active_idx;
CREATE UNIQUE INDEX jobs_unique_active_idx ON pgcue.jobs (type, channel_id, unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('queued', 'running');

-- --- artifacts ------------------------------------------------------------------------------
-- artifact_bytes: NULL while the job has no artifact folder; else the bytes of its files,
-- counted against its channel's quota when each is published.
ALTER TABLE pgcue.jobs ADD COLUMN artifact_bytes bigint CHECK (artifact_bytes >= 0);
COMMENT ON COLUMN pgcue.jobs.artifact_bytes IS
    'NULL: no artifact folder; else the bytes of the job''s published artifacts.';

CREATE TABLE pgcue.channel_storage (
    channel_id text PRIMARY KEY,
    bytes      bigint NOT NULL DEFAULT 0 CHECK (bytes >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgcue.channel_storage IS 'Bytes of artifacts each channel keeps (PGCUE_ARTIFACT_QUOTA_BYTES).';

-- Deleted jobs whose folder is still to be removed from disk. Written in the transaction
-- that deletes the job, whoever deletes it (the API, prune, clear, psql), and emptied by
-- the maintenance leader after each folder is gone: a crash in between leaves the row,
-- and the removal is done again. No file outlives its job for longer than that.
CREATE TABLE pgcue.artifact_deletions (
    job_id     uuid PRIMARY KEY,
    channel_id text NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgcue.artifact_deletions IS 'Artifact folders of deleted jobs, waiting for the maintenance leader.';

CREATE FUNCTION pgcue.jobs_deleted() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
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
COMMENT ON FUNCTION pgcue.jobs_deleted() IS
    'After a delete of jobs: their artifact folders are queued for removal and their bytes leave the channel''s count.';

CREATE TRIGGER jobs_deleted AFTER DELETE ON pgcue.jobs
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION pgcue.jobs_deleted();

-- --- payload schemas ----------------------------------------------------------------------
ALTER TABLE pgcue.job_types ADD COLUMN payload_schema jsonb
    CHECK (payload_schema IS NULL OR jsonb_typeof(payload_schema) = 'object');
COMMENT ON COLUMN pgcue.job_types.payload_schema IS
    'JSON Schema of the type''s payload (registered by its workers); every enqueue is checked against it.';

-- --- one timestamp format ---------------------------------------------------------------
-- What the API shows: ISO 8601 in UTC with milliseconds and a Z. JSON that SQL writes
-- (errors[].at, stage feedback, event data) uses the same, through this function.
CREATE FUNCTION pgcue.iso_ms(t timestamptz) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
    RETURN to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');
COMMENT ON FUNCTION pgcue.iso_ms(timestamptz) IS 'ISO 8601, UTC, milliseconds, Z: the API''s one timestamp format.';

-- resume_pipeline (0005), with the decision's time in that format.
CREATE OR REPLACE FUNCTION pgcue.resume_pipeline(job_id uuid, approve boolean, feedback text DEFAULT NULL,
                                                 decided_by text DEFAULT NULL)
RETURNS TABLE (stage text, stage_state text, iteration integer, notified bigint)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
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
$$;
