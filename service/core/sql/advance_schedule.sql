-- advance_schedule: a schedule's ticks up to now are enqueued; its next one is $2.
-- params: $1 name text, $2 next_run_at timestamptz, $3 last_run_at timestamptz
UPDATE pgcue.schedules SET next_run_at = $2, last_run_at = $3, updated_at = now() WHERE name = $1;
