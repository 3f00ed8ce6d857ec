-- upsert_schedules: register periodic jobs (workers at start, `pgcue migrate`). A changed
-- cron expression restarts the schedule from $10 (its next tick from now); otherwise the
-- schedule keeps its place.
-- params: $1 names, $2 crons, $3 types, $4 channel_ids text[], $5 payloads text[] (JSON),
--         $6 priorities smallint[], $7 catch_up boolean[], $8 next_run_ats timestamptz[]
INSERT INTO pgcue.schedules AS s (name, cron, type, channel_id, payload, priority, catch_up, next_run_at)
SELECT u.name, u.cron, u.type, u.channel_id, u.payload::jsonb, u.priority, u.catch_up, u.next_run_at
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::smallint[], $7::boolean[],
            $8::timestamptz[]) AS u(name, cron, type, channel_id, payload, priority, catch_up, next_run_at)
ON CONFLICT (name) DO UPDATE
SET cron = EXCLUDED.cron, type = EXCLUDED.type, channel_id = EXCLUDED.channel_id,
    payload = EXCLUDED.payload, priority = EXCLUDED.priority, catch_up = EXCLUDED.catch_up,
    next_run_at = CASE WHEN s.cron = EXCLUDED.cron THEN s.next_run_at ELSE EXCLUDED.next_run_at END,
    updated_at = now()
WHERE (s.cron, s.type, s.channel_id, s.payload, s.priority, s.catch_up)
   IS DISTINCT FROM (EXCLUDED.cron, EXCLUDED.type, EXCLUDED.channel_id, EXCLUDED.payload,
                     EXCLUDED.priority, EXCLUDED.catch_up);
