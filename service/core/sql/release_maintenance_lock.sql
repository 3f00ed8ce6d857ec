-- release_maintenance_lock: stop leading maintenance (before the lock's connection goes back
-- to the pool, which must then hold no session lock).
SELECT pg_advisory_unlock(hashtext('pgcue.maintenance')) AS released;
