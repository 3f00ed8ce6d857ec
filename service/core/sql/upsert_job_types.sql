-- upsert_job_types: register job types and their settings (workers at start, `pgcue migrate`).
-- The registry is the source of the settings; `paused` is not a setting but an operator's
-- switch (API, CLI, psql), so registering never touches it.
-- params: $1 names text[], $2 plans text[], $3 concurrency int[], $4 memory_mb int[],
--         $5 lease_seconds int[], $6 timeout_seconds int[], $7 max_attempts int[],
--         $8 descriptions text[], $9 global_concurrency int[], $10 channel_concurrency int[],
--         $11 rate_limit int[], $12 rate_period_seconds int[], $13 payload schemas text[] (JSON Schema or NULL)
INSERT INTO pgcue.job_types AS t
    (name, plan, concurrency, memory_mb, lease_seconds, timeout_seconds, max_attempts, description,
     global_concurrency, channel_concurrency, rate_limit, rate_period_seconds, payload_schema)
SELECT u.name, u.plan, u.concurrency, u.memory_mb, u.lease_seconds, u.timeout_seconds, u.max_attempts,
       u.description, u.global_concurrency, u.channel_concurrency, u.rate_limit, u.rate_period_seconds,
       u.payload_schema::jsonb
FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::int[], $6::int[],
            $7::int[], $8::text[], $9::int[], $10::int[], $11::int[], $12::int[], $13::text[])
     AS u(name, plan, concurrency, memory_mb, lease_seconds, timeout_seconds, max_attempts, description,
          global_concurrency, channel_concurrency, rate_limit, rate_period_seconds, payload_schema)
ON CONFLICT (name) DO UPDATE
SET plan = EXCLUDED.plan, concurrency = EXCLUDED.concurrency, memory_mb = EXCLUDED.memory_mb,
    lease_seconds = EXCLUDED.lease_seconds, timeout_seconds = EXCLUDED.timeout_seconds,
    max_attempts = EXCLUDED.max_attempts, description = EXCLUDED.description,
    global_concurrency = EXCLUDED.global_concurrency, channel_concurrency = EXCLUDED.channel_concurrency,
    rate_limit = EXCLUDED.rate_limit, rate_period_seconds = EXCLUDED.rate_period_seconds,
    payload_schema = EXCLUDED.payload_schema, updated_at = now()
WHERE (t.plan, t.concurrency, t.memory_mb, t.lease_seconds, t.timeout_seconds, t.max_attempts,
       t.description, t.global_concurrency, t.channel_concurrency, t.rate_limit, t.rate_period_seconds,
       t.payload_schema)
   IS DISTINCT FROM
      (EXCLUDED.plan, EXCLUDED.concurrency, EXCLUDED.memory_mb, EXCLUDED.lease_seconds,
       EXCLUDED.timeout_seconds, EXCLUDED.max_attempts, EXCLUDED.description,
       EXCLUDED.global_concurrency, EXCLUDED.channel_concurrency, EXCLUDED.rate_limit,
       EXCLUDED.rate_period_seconds, EXCLUDED.payload_schema);
