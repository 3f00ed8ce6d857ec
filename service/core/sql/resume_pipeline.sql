-- resume_pipeline: a person approves, or rejects with feedback, the stage a pipeline run
-- waits on; the run is woken. The statement is the function pgcue.resume_pipeline
-- (migrations/0005_pipelines.sql), shared with psql users.
-- params: $1 job id uuid, $2 approve boolean, $3 feedback text, $4 decided by text
-- returns: the stage decided on (no row: the run waits for no approval).
SELECT stage, stage_state, iteration, notified FROM pgcue.resume_pipeline($1, $2, $3, $4);
