-- try_maintenance_lock: become the maintenance leader if no one is. A session-scoped lock,
-- taken on a pooled connection that the leader keeps out of the pool for as long as it
-- leads (release_maintenance_lock gives it up); a follower tries on a pooled connection
-- now and then and hands it straight back, so the fleet holds one connection for this.
SELECT pg_try_advisory_lock(hashtext('pgcue.maintenance')) AS acquired;
