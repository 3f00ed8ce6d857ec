-- list_pipeline_stages_of: the stages of several pipeline runs at once (the panel shows a
-- page of runs with their stages beneath).
-- params: $1 run ids uuid[]
-- plan: pipeline_stages_pkey probes (job_id = ANY), a few rows per run.
SELECT job_id, position, name, spec, state, iteration, feedback, child_id, review_child_id,
       result, result_path, started_at, finished_at, updated_at
FROM pgcue.pipeline_stages
WHERE job_id = ANY ($1::uuid[])
ORDER BY job_id, position;
