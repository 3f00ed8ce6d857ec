-- record_migration: note a migration as applied (same transaction as the migration).
-- params: $1 version int, $2 name text, $3 checksum text
INSERT INTO pgcue.schema_migrations (version, name, checksum) VALUES ($1, $2, $3);
