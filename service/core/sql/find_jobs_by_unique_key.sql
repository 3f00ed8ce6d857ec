-- find_jobs_by_unique_key: the queued or running jobs holding these (type, channel, unique
-- key) triples: a unique key belongs to its channel, so no other tenant's job is found.
-- params: $1 types text[], $2 channel ids text[], $3 unique_keys text[]
-- plan: one probe of jobs_unique_active_idx per triple.
SELECT u.type, u.channel_id, u.unique_key, j.id, j.state
FROM unnest($1::text[], $2::text[], $3::text[]) AS u(type, channel_id, unique_key)
JOIN pgcue.jobs j ON j.type = u.type AND j.channel_id = u.channel_id AND j.unique_key = u.unique_key
WHERE j.unique_key IS NOT NULL AND j.state IN ('queued', 'running');
