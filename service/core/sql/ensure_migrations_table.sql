-- ensure_migrations_table: the record of applied migrations (created before the first one).
CREATE TABLE IF NOT EXISTS pgcue.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
