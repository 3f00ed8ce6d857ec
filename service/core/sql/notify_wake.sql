-- notify_wake: wake the workers of job type $1 (a type was resumed: its queued jobs may run).
-- params: $1 job type text
SELECT pg_notify('pgcue_wake', $1);
