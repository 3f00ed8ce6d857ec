-- schema_installed: whether pgcue's migration record exists in this database.
SELECT to_regclass('pgcue.schema_migrations') IS NOT NULL AS installed;
