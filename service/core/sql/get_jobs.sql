-- get_jobs: whole rows by id (primary key probes).
-- params: $1 ids uuid[]
SELECT * FROM pgcue.jobs WHERE id = ANY($1::uuid[]);
