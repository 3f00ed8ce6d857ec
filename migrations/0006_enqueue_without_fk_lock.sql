-- pgcue 0006: the job type check moves from a foreign key to the enqueue statement.
--
-- jobs.type REFERENCES job_types(name) made every inserted row run an RI trigger that
-- takes FOR KEY SHARE on its job_types row. Concurrent enqueues of one type all lock the
-- same row, so PostgreSQL builds a new MultiXact for each of them: measured with 64
-- connections posting jobs of one type, this halved POST /api/jobs (615 → 1,267 req/s)
-- and it cost a trigger call per row in bulk enqueues.
--
-- The rule stays enforced, from both sides, without a per-row lock:
--   * service/sql/_enqueue.sql (the only statement text that inserts jobs) takes each
--     row's type as coalesce(job_types.name, pgcue.unknown_job_type(type)): a type that
--     is not registered raises foreign_key_violation, so the whole statement writes
--     nothing, as before;
--   * a job type that still has jobs cannot be deleted or renamed (trigger below).
-- The gap this leaves: a type deleted concurrently with an enqueue of it. Types are
-- only ever upserted by workers and `pgcue migrate`; nothing in pgcue deletes one.

ALTER TABLE pgcue.jobs DROP CONSTRAINT jobs_type_fkey;

CREATE FUNCTION pgcue.unknown_job_type(asked text) RETURNS text
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'unknown job type %', asked
        USING ERRCODE = 'foreign_key_violation',
              HINT = 'register it: run its worker or `pgcue migrate`; `pgcue types` lists the known ones';
END $$;
COMMENT ON FUNCTION pgcue.unknown_job_type(text) IS
    'enqueue_jobs: raises foreign_key_violation; called as coalesce(job_types.name, unknown_job_type(type)), so only for a type with no row.';

CREATE FUNCTION pgcue.job_type_in_use() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pgcue.jobs WHERE type = OLD.name) THEN
        RAISE EXCEPTION 'job type % still has jobs', OLD.name
            USING ERRCODE = 'foreign_key_violation',
                  HINT = 'delete its jobs first (pgcue.delete_jobs) or keep the type';
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END $$;

CREATE TRIGGER job_types_in_use
    BEFORE DELETE OR UPDATE OF name ON pgcue.job_types
    FOR EACH ROW EXECUTE FUNCTION pgcue.job_type_in_use();
