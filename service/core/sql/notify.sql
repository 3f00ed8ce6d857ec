-- notify: one notification on a channel the caller names (a listener's probe, which must
-- come back to the listener that sent it; pgcue.core.listener).
-- params: $1 channel text, $2 payload text
SELECT pg_notify($1, $2);
