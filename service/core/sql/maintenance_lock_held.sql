-- maintenance_lock_held: does some session of this database hold the maintenance lock
-- (try_maintenance_lock's key)? Read through any connection, a pooled one included: behind
-- a transaction pooler a follower asks this first and opens a direct session to try the
-- lock only when nobody leads, so followers hold and churn no direct connections.
-- A one-key advisory lock shows its bigint key split in two: classid the high 32 bits,
-- objid the low 32, objsubid 1.
SELECT EXISTS (
    SELECT 1 FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND objsubid = 1
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND ((classid::int8 << 32) | objid::int8) = hashtext('pgcue.maintenance')::int8
) AS held;
