-- list_job_types: every registered type and its settings.
SELECT * FROM pgcue.job_types ORDER BY name;
