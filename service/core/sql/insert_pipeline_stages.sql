-- insert_pipeline_stages: a pipeline run's stages, from the definition as it stands when
-- the run first starts (the copy stays with the run). A run that has its stages already
-- keeps them (crash and resume, retry).
-- params: $1 job id uuid, $2 names text[], $3 specs text[] (JSON)
-- returns: the stages inserted, each with a `pending` stage:updated event.
WITH run AS (
    SELECT id, channel_id, owner_id FROM pgcue.jobs WHERE id = $1
), new AS (
    INSERT INTO pgcue.pipeline_stages (job_id, position, name, spec)
    SELECT $1, s.ord - 1, s.name, s.spec::jsonb
    FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS s(name, spec, ord)
    ON CONFLICT DO NOTHING
    RETURNING job_id, position, name, state, iteration
), events AS (
    INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
    SELECT n.job_id, r.channel_id, r.owner_id, 'stage:updated',
           jsonb_build_object('stage', n.name, 'position', n.position, 'state', n.state,
                              'iteration', n.iteration)
    FROM new n CROSS JOIN run r
    ORDER BY n.position
)
SELECT n.position, (SELECT pg_notify('pgcue_events', '')) IS NULL AS notified
FROM new n;
