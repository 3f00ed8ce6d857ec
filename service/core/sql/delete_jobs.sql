-- delete_jobs: delete finished jobs (and their events) by id; running and queued jobs stay.
-- The statement is the function pgcue.delete_jobs (migrations/0003_inspection.sql), which
-- pgcue.purge_jobs also uses.
-- params: $1 ids uuid[]
-- returns: the deleted ids.
SELECT id FROM pgcue.delete_jobs($1::uuid[]);
