-- upsert_job_types: register job types and their settings (workers at start, `pgcue migrate`).
-- params: $1 names text[], $2 plans text[], $3 concurrency int[], $4 memory_mb int[],
--         $5 lease_seconds int[], $6 timeout_seconds int[], $7 max_attempts int[],
--         $8 descriptions text[]
INSERT INTO pgcue.job_types AS t
    (name, plan, concurrency, memory_mb, lease_seconds, timeout_seconds, max_attempts, description)
SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::int[], $6::int[],
                     $7::int[], $8::text[])
ON CONFLICT (name) DO UPDATE
SET plan = EXCLUDED.plan, concurrency = EXCLUDED.concurrency, memory_mb = EXCLUDED.memory_mb,
    lease_seconds = EXCLUDED.lease_seconds, timeout_seconds = EXCLUDED.timeout_seconds,
    max_attempts = EXCLUDED.max_attempts, description = EXCLUDED.description,
    updated_at = now()
WHERE (t.plan, t.concurrency, t.memory_mb, t.lease_seconds, t.timeout_seconds,
       t.max_attempts, t.description)
   IS DISTINCT FROM
      (EXCLUDED.plan, EXCLUDED.concurrency, EXCLUDED.memory_mb, EXCLUDED.lease_seconds,
       EXCLUDED.timeout_seconds, EXCLUDED.max_attempts, EXCLUDED.description);
