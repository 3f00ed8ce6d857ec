-- record_outside_work: a running job records the outside work it is about to start (a
-- provider's prediction: the idempotency key it will be created with) in handler_state,
-- or clears it ($3 NULL). A job that starts outside work takes a place under its type's
-- channel_concurrency, counted over the jobs of the type in its channel whose outside
-- work is in flight (handler_state set, queued or running): a job parked between polls
-- is `queued`, and would not be counted by the claim's running-job limit. Run after
-- lock_outside_work, in its transaction.
-- params: $1 id uuid, $2 fence bigint, $3 handler state text (a JSON object; NULL clears)
-- returns one row while this worker holds the job (fenced): `recorded` false when the
-- channel has no place left (nothing was written), `in_flight` the others' count and
-- `channel_limit` the type's channel_concurrency (NULL: no limit).
-- plan: jobs_pkey for the job, jobs_outside_work_idx for the count.
WITH me AS (
    SELECT j.id, j.type, j.channel_id, t.channel_concurrency AS channel_limit
    FROM pgcue.jobs j
    JOIN pgcue.job_types t ON t.name = j.type
    WHERE j.id = $1 AND j.fence = $2 AND j.state = 'running'
), busy AS (
    SELECT count(*) AS in_flight
    FROM pgcue.jobs o, me
    WHERE o.type = me.type AND o.channel_id = me.channel_id AND o.id <> me.id
      AND o.handler_state IS NOT NULL AND o.state IN ('queued', 'running')
), recorded AS (
    UPDATE pgcue.jobs j
    SET handler_state = $3::text::jsonb, updated_at = now()
    FROM me, busy
    WHERE j.id = me.id AND j.fence = $2 AND j.state = 'running'
      AND ($3::text IS NULL OR j.handler_state IS NOT NULL
           OR me.channel_limit IS NULL OR busy.in_flight < me.channel_limit)
    RETURNING j.id
)
SELECT me.id, EXISTS (SELECT 1 FROM recorded) AS recorded, busy.in_flight, me.channel_limit
FROM me, busy;
