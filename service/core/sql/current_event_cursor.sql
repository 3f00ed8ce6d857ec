-- current_event_cursor: "now" in the event log: the current snapshot and the highest event
-- id it sees; in one statement, so every event visible in the snapshot has id <= last_id.
-- plan: Index Only Scan Backward on job_events_pkey (max).
SELECT pg_current_snapshot()::text AS snapshot, coalesce(max(id), 0) AS last_id
FROM pgcue.job_events;
