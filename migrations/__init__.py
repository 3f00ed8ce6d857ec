"""The schema's migrations, NNNN_name.sql, applied in order by `pgcue migrate`; shipped in the
package as pgcue.migrations and read through importlib.resources."""
