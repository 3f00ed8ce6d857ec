-- schema_version: the highest applied migration (readiness check).
SELECT coalesce(max(version), 0) AS version FROM pgcue.schema_migrations;
