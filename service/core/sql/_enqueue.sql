-- _enqueue (a fragment, included by enqueue_jobs.sql and enqueue_jobs_returning.sql): the
-- CTEs that insert jobs and their `queued` events. Each including statement ends with its
-- own SELECT over `new` (the inserted rows, whole) that also sends the notifications.
WITH new AS (
    INSERT INTO pgcue.jobs AS j
        (id, type, channel_id, owner_id, priority, payload, run_at, max_attempts, idempotency_key, unique_key,
         parent_id)
    SELECT u.id, coalesce(t.name, pgcue.unknown_job_type(u.type)), u.channel_id, u.owner_id, coalesce(u.priority, 0), u.payload::jsonb,
           coalesce(u.run_at, now()), coalesce(u.max_attempts, t.max_attempts, 3), u.idempotency_key,
           u.unique_key, u.parent_id
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::smallint[],
                $6::text[], $7::timestamptz[], $8::int[], $9::text[], $10::text[], $11::uuid[])
         AS u(id, type, channel_id, owner_id, priority, payload, run_at, max_attempts, idempotency_key,
              unique_key, parent_id)
    LEFT JOIN pgcue.job_types t ON t.name = u.type
    ON CONFLICT DO NOTHING
    RETURNING j.*
), events AS (
    INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
    SELECT id, channel_id, owner_id, 'job:status',
           jsonb_build_object('state', 'queued', 'attempt', 0, 'maxAttempts', max_attempts)
    FROM new
)
