-- enqueue_jobs: insert many jobs in one round trip, record a `queued` event for each,
-- and wake the workers of each type that has a job runnable now.
-- params: $1 ids uuid[] (made by the caller, time-ordered), $2 types text[],
--         $3 channel_ids text[], $4 owner_ids text[], $5 priorities smallint[],
--         $6 payloads text[] (JSON), $7 run_ats timestamptz[] (NULL = now),
--         $8 max_attempts int[] (NULL = the type's default), $9 idempotency_keys text[],
--         $10 unique_keys text[], $11 parent_ids uuid[] (a pipeline run's children; NULL = none)
-- returns: the ids actually inserted. A row whose idempotency key is taken, or whose
-- (type, unique key) has a queued or running job, inserts nothing; the caller resolves it.
-- An unknown type raises foreign_key_violation (pgcue.known_job_type, migration 0006)
-- and the whole statement writes nothing.
-- Notifications: one `events` and one `wake` per distinct type, per statement.
WITH new AS (
    INSERT INTO pgcue.jobs AS j
        (id, type, channel_id, owner_id, priority, payload, run_at, max_attempts, idempotency_key, unique_key,
         parent_id)
    SELECT u.id, coalesce(t.name, pgcue.known_job_type(t.name, u.type)), u.channel_id, u.owner_id, coalesce(u.priority, 0), u.payload::jsonb,
           coalesce(u.run_at, now()), coalesce(u.max_attempts, t.max_attempts, 3), u.idempotency_key,
           u.unique_key, u.parent_id
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::smallint[],
                $6::text[], $7::timestamptz[], $8::int[], $9::text[], $10::text[], $11::uuid[])
         AS u(id, type, channel_id, owner_id, priority, payload, run_at, max_attempts, idempotency_key,
              unique_key, parent_id)
    LEFT JOIN pgcue.job_types t ON t.name = u.type
    ON CONFLICT DO NOTHING
    RETURNING j.id, j.type, j.channel_id, j.owner_id, j.run_at, j.max_attempts
), events AS (
    INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
    SELECT id, channel_id, owner_id, 'job:status',
           jsonb_build_object('state', 'queued', 'attempt', 0, 'maxAttempts', max_attempts)
    FROM new
)
SELECT n.id,
       (SELECT count(pg_notify(c.channel, c.payload))
        FROM (SELECT 'pgcue_events' AS channel, '' AS payload
              UNION
              SELECT 'pgcue_wake', type FROM new WHERE run_at <= now()) c) AS notified
FROM new n;
