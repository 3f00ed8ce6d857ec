-- lock_migrations: one migrator at a time per schema (transaction-scoped advisory lock).
SELECT pg_advisory_xact_lock(hashtext('pgcue.migrations'));
