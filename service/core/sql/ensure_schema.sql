-- ensure_schema: the schema every pgcue object lives in.
CREATE SCHEMA IF NOT EXISTS pgcue;
