-- list_pipeline_stages: a pipeline run's stages in order.
-- params: $1 job id uuid
-- plan: primary-key range scan of pipeline_stages.
SELECT job_id, position, name, spec, state, iteration, feedback, child_id, review_child_id,
       result, result_path, started_at, finished_at, updated_at
FROM pgcue.pipeline_stages
WHERE job_id = $1
ORDER BY position;
