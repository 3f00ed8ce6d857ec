-- enqueue_jobs_keyless: enqueue_jobs for a batch in which no job carries an idempotency or
-- a unique key (every bulk call of fresh work). Nothing can conflict but the primary key,
-- and the caller's ids are new UUIDv7s, so the insert needs no ON CONFLICT: speculative
-- insertion (a token per row, then a second visit to confirm it) cost about a fifth of
-- the jobs insert (docs/benchmarks.md). Nor does it answer with the ids, which the caller
-- made: one row, how many went in (all of them, or the statement failed and none did).
-- params: enqueue_jobs' without the two key columns: $1 ids uuid[], $2 types text[],
--         $3 channel_ids text[], $4 owner_ids text[], $5 priorities smallint[],
--         $6 payloads text[] (JSON), $7 run_ats timestamptz[] (NULL = now),
--         $8 max_attempts int[] (NULL = the type's default), $9 parent_ids uuid[]
-- An unknown type raises foreign_key_violation (pgcue.unknown_job_type) and writes nothing.
-- Hot path (bulk enqueue). Plan (EXPLAIN, 100,000 rows):
--   Result
--     CTE new    -> Insert on jobs -> Hash Left Join (Function Scan on unnest u,
--                   Hash <- Seq Scan on job_types)
--     CTE events -> Insert on job_events -> CTE Scan on new
--     InitPlan (inserted) -> Aggregate -> CTE Scan on new
--     InitPlan (notified) -> Aggregate -> HashAggregate -> Append (Result, CTE Scan on new
--                            Filter: run_at <= now())
-- Notifications: one `events` and one `wake` per distinct type, per statement.
WITH new AS (
    INSERT INTO pgcue.jobs AS j
        (id, type, channel_id, owner_id, priority, payload, run_at, max_attempts, parent_id)
    SELECT u.id, coalesce(t.name, pgcue.unknown_job_type(u.type)), u.channel_id, u.owner_id, coalesce(u.priority, 0),
           u.payload::jsonb, coalesce(u.run_at, now()), coalesce(u.max_attempts, t.max_attempts, 3), u.parent_id
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::smallint[],
                $6::text[], $7::timestamptz[], $8::int[], $9::uuid[])
         AS u(id, type, channel_id, owner_id, priority, payload, run_at, max_attempts, parent_id)
    LEFT JOIN pgcue.job_types t ON t.name = u.type
    RETURNING j.id, j.type, j.channel_id, j.owner_id, j.max_attempts, j.run_at
), events AS (
    INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
    SELECT id, channel_id, owner_id, 'job:status',
           jsonb_build_object('state', 'queued', 'attempt', 0, 'maxAttempts', max_attempts)
    FROM new
)
SELECT (SELECT count(*) FROM new) AS inserted,
       (SELECT count(pg_notify(c.channel, c.payload))
        FROM (SELECT 'pgcue_events' AS channel, '' AS payload
              UNION
              SELECT 'pgcue_wake', type FROM new WHERE run_at <= now()) c) AS notified;
