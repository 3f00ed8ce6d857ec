-- list_migrations: applied migrations, in order.
SELECT version, name, checksum, applied_at FROM pgcue.schema_migrations ORDER BY version;
