-- count_jobs: how many jobs of one channel are in each of some states, of some types,
-- created in a time range, counted up to a cap (the panel's status chips and the bulk
-- actions' confirmation). Capped, a count costs at most $7 index entries per state
-- whatever the channel holds; "10,000+" is what a person needs to know past that.
-- params: $1 channel id text, $2 types text[] (NULL = every registered type), $3 states
--         text[], $4 created at or after timestamptz ('-infinity' = any), $5 created
--         before timestamptz ('infinity' = any), $6 include pipeline children bool,
--         $7 cap int
-- returns one row per state: (state, jobs), jobs <= $7.
-- plan: per state, Limit -> Index Scan using jobs_channel_type_state_idx
--   (Index Cond: channel_id = $1 AND type = ANY (job_types) AND state = s.state AND
--   created_at range; Filter: $6 OR parent_id IS NULL), one descent per type.
SELECT s.state,
       (SELECT count(*) FROM (
            SELECT 1 FROM pgcue.jobs x
            WHERE x.channel_id = $1
              AND x.type = ANY (coalesce($2::text[], ARRAY(SELECT name FROM pgcue.job_types)))
              AND x.state = s.state
              AND x.created_at >= $4::timestamptz AND x.created_at < $5::timestamptz
              AND ($6::bool OR x.parent_id IS NULL)
            LIMIT $7) capped) AS jobs
FROM unnest($3::text[]) AS s(state);
