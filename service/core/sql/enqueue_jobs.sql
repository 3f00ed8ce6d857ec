-- enqueue_jobs: insert many jobs in one round trip, record a `queued` event for each,
-- and wake the workers of each type that has a job runnable now.
-- params: $1 ids uuid[] (made by the caller, time-ordered), $2 types text[],
--         $3 channel_ids text[], $4 owner_ids text[], $5 priorities smallint[],
--         $6 payloads text[] (JSON), $7 run_ats timestamptz[] (NULL = now),
--         $8 max_attempts int[] (NULL = the type's default), $9 idempotency_keys text[],
--         $10 unique_keys text[], $11 parent_ids uuid[] (a pipeline run's children; NULL = none)
-- returns: the ids actually inserted. A row whose idempotency key is taken, or whose
-- (type, unique key) has a queued or running job, inserts nothing; the caller resolves it.
-- An unknown type raises foreign_key_violation (pgcue.unknown_job_type, migration 0006)
-- and the whole statement writes nothing.
-- Notifications: one `events` and one `wake` per distinct type, per statement.
-- include: _enqueue
SELECT n.id,
       (SELECT count(pg_notify(c.channel, c.payload))
        FROM (SELECT 'pgcue_events' AS channel, '' AS payload
              UNION
              SELECT 'pgcue_wake', type FROM new WHERE run_at <= now()) c) AS notified
FROM new n;
