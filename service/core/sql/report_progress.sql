-- report_progress: the worker's coalesced report of progress, stage and output for many
-- running jobs at once: one UPDATE of the rows, their events, one notification.
-- params: $1 ids uuid[], $2 fences bigint[], $3 progress smallint[] (NULL = unchanged),
--         $4 messages text[], $5 stages text[] (NULL = unchanged),
--         $6 event job ids uuid[], $7 event kinds text[], $8 event data text[] (JSON)
-- Fenced by the claim's fence: a lost job's report is dropped, and its id is missing from the answer.
-- Only unindexed columns change, so the update is HOT.
WITH reported AS (
    UPDATE pgcue.jobs j
    SET progress = coalesce(r.progress, j.progress),
        progress_message = coalesce(r.message, j.progress_message),
        stage = coalesce(r.stage, j.stage),
        updated_at = now()
    FROM unnest($1::uuid[], $2::bigint[], $3::smallint[], $4::text[], $5::text[])
         AS r(id, fence, progress, message, stage)
    WHERE j.id = r.id AND j.fence = r.fence AND j.state = 'running'
    RETURNING j.id, j.channel_id, j.owner_id
), events AS (
    INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
    SELECT r.id, r.channel_id, r.owner_id, e.kind, e.data::jsonb
    FROM unnest($6::uuid[], $7::text[], $8::text[]) WITH ORDINALITY AS e(job_id, kind, data, ord)
    JOIN reported r ON r.id = e.job_id
    ORDER BY e.ord
)
SELECT r.id, (SELECT pg_notify('pgcue_events', '')) IS NULL AS notified
FROM reported r;
