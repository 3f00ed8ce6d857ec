-- lock_due_schedules: schedules with a tick due, locked for this transaction (a second
-- leader, if there briefly is one, skips them). Run by the maintenance leader each second.
-- plan: schedules_due_idx range scan (next_run_at <= now()).
SELECT name, cron, type, channel_id, payload, priority, catch_up, next_run_at, now() AS now
FROM pgcue.schedules
WHERE NOT paused AND next_run_at <= now()
ORDER BY next_run_at
FOR UPDATE SKIP LOCKED;
