-- try_maintenance_lock: become the maintenance leader if no one is (session-scoped lock,
-- held on a dedicated connection for as long as the process leads).
SELECT pg_try_advisory_lock(hashtext('pgcue.maintenance')) AS acquired;
