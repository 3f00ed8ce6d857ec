-- set_lock_timeout: how long this transaction's statements wait for a lock (a migration's:
-- past it the migration fails, having changed nothing).
-- params: $1 timeout text ('10000ms')
SELECT set_config('lock_timeout', $1, true);
