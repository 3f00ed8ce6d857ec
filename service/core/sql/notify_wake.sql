-- notify_wake: a notification on the wake channel with payload $1. Workers use it to
-- probe their own LISTEN connection (a payload that is no job type wakes no producer).
-- params: $1 payload text
SELECT pg_notify('pgcue_wake', $1);
