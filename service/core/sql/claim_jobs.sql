-- claim_jobs: take up to $2 runnable jobs of type $1 for worker $3 with a lease of $4
-- seconds, round-robin across channels; each claimed job starts its next attempt under a
-- new fence (its claim counter, which no retry resets) and gets a `running` event.
-- A job that waits on a provider (waiting_for = 'provider', sql/snooze_job.sql) is
-- claimed for one poll at a time: its attempt goes on, so it keeps its started_at and
-- gets no `running` event per poll (its `queued` event said it waits on the provider).
-- A pipeline run that has parked (jobs.parked) keeps its started_at too.
-- params: $1 type text, $2 limit int, $3 worker id text, $4 lease seconds float8,
--         $5 channel cursor text (the ring starts after it; '' = from the start),
--         $6 per-channel running limit int (NULL = none; set only under claim_budget's lock)
-- returns the claimed jobs (or one row of NULLs when none), each with `next_cursor`, where
-- this worker's next claim starts, and `ring_channels`, how many channels were visited.
--
-- Fairness. A channel with 10,000 queued jobs must not starve one with a single job, so
-- a claim does not take the type's top $2 jobs: it walks the distinct channels that have
-- queued jobs of the type (a skip scan: one probe of jobs_claim_idx per channel, never a
-- scan of the backlog), starting after the cursor and wrapping round, at most $2 channels,
-- and takes ceil($2 / channels) jobs from each in priority order; then it orders them by
-- their rank within their channel, so channels take turns. Each worker process keeps its
-- own cursor, so successive claims move on round the ring.
--
-- Hot path. Plan (EXPLAIN, 100k queued rows in 16 channels, $2 = 100):
--   Update on jobs
--     CTE ring   -> Recursive Union (per channel: 2 Index Only Scans using jobs_claim_idx, LIMIT 1)
--     CTE locked -> Nested Loop (ring x Limit -> LockRows -> Index Scan using jobs_claim_idx
--                   Index Cond: (type = $1 AND channel_id = r.channel_id AND run_at <= now()))
--     CTE ranked -> WindowAgg (sort of the <= $2 + channels locked rows)
--     CTE next   -> Limit -> Sort by rank
--     CTE claimed -> Update on jobs -> Index Scan using jobs_pkey (id = ANY (ARRAY(next)))
-- The state is re-checked on each locked row, so a job claimed meanwhile is not taken
-- twice. Locked rows past the limit stay queued and are free again at commit.
WITH RECURSIVE ring (channel_id, first_channel, n) AS (
    SELECT c.channel_id, c.channel_id, 1
    FROM (SELECT coalesce(
              (SELECT channel_id FROM pgcue.jobs
               WHERE state = 'queued' AND type = $1 AND channel_id > $5
               ORDER BY channel_id LIMIT 1),
              (SELECT channel_id FROM pgcue.jobs
               WHERE state = 'queued' AND type = $1
               ORDER BY channel_id LIMIT 1)) AS channel_id) c
    WHERE c.channel_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM pgcue.job_types WHERE name = $1 AND paused)
  UNION ALL
    SELECT nx.channel_id, r.first_channel, r.n + 1
    FROM ring r
    CROSS JOIN LATERAL (SELECT coalesce(
              (SELECT channel_id FROM pgcue.jobs
               WHERE state = 'queued' AND type = $1 AND channel_id > r.channel_id
               ORDER BY channel_id LIMIT 1),
              (SELECT channel_id FROM pgcue.jobs
               WHERE state = 'queued' AND type = $1
               ORDER BY channel_id LIMIT 1)) AS channel_id) nx
    WHERE r.n < $2 AND nx.channel_id <> r.first_channel
), ring_size AS (
    SELECT count(*) AS channels, max(n) AS last_n FROM ring
), locked AS (
    -- Each channel's next jobs, locked as they are read: SKIP LOCKED passes over rows
    -- another worker is claiming and the scan goes on to the next, so concurrent claims
    -- share the backlog instead of colliding on the same candidates.
    SELECT r.n AS ring_pos, q.id, q.channel_id, q.priority, q.run_at
    FROM ring r
    CROSS JOIN LATERAL (
        SELECT j.id, j.channel_id, j.priority, j.run_at
        FROM pgcue.jobs j
        WHERE j.state = 'queued' AND j.type = $1 AND j.channel_id = r.channel_id AND j.run_at <= now()
          AND NOT EXISTS (SELECT 1 FROM pgcue.paused_channels p WHERE p.channel_id = r.channel_id)
        ORDER BY j.priority DESC, j.run_at
        LIMIT (SELECT ceil($2::numeric / channels) FROM ring_size)
        FOR UPDATE SKIP LOCKED
    ) q
), ranked AS (
    SELECT id, channel_id, priority, ring_pos,
           row_number() OVER (PARTITION BY channel_id ORDER BY priority DESC, run_at) AS rank
    FROM locked
), next AS (
    -- Channels take turns: every channel's first job, then every channel's second, ...
    SELECT k.id, k.rank, k.priority, k.ring_pos
    FROM ranked k
    WHERE $6::int IS NULL OR k.rank <= $6 - (
        SELECT count(*) FROM pgcue.jobs x
        WHERE x.state = 'running' AND x.type = $1 AND x.channel_id = k.channel_id)
    ORDER BY k.rank, k.priority DESC, k.ring_pos
    LIMIT $2
), claimed AS (
    UPDATE pgcue.jobs j
    SET state = 'running',
        attempts = j.attempts + 1,
        fence = j.fence + 1,
        locked_by = $3,
        lease_expires_at = now() + make_interval(secs => $4),
        -- A job that waits (a provider's prediction, a parked pipeline run) goes on with
        -- the attempt it started: its started_at stays, so its duration covers it all.
        started_at = CASE WHEN j.waiting_for = 'provider' OR j.parked THEN coalesce(j.started_at, now())
                          ELSE now() END,
        updated_at = now()
    -- The ids as an array, not a join: the planner cannot tell how few rows `next` has
    -- and may otherwise hash-join it against a sequential scan of the whole table.
    WHERE j.id = ANY (ARRAY(SELECT id FROM next))
    RETURNING j.id, j.type, j.channel_id, j.owner_id, j.priority, j.payload, j.attempts,
              j.max_attempts, j.fence, j.cancel_requested, j.stage, j.created_at, j.run_at, j.started_at,
              j.handler_state, j.waiting_for, now() AS claimed_at
), events AS (
    INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data)
    SELECT id, channel_id, owner_id, 'job:status',
           jsonb_build_object('state', 'running', 'attempt', attempts, 'maxAttempts', max_attempts)
    FROM claimed
    WHERE waiting_for IS DISTINCT FROM 'provider'
)
-- Always one row at least: where the next claim starts round the ring (also when nothing
-- was claimed, so channels whose jobs are all delayed are passed over next time), and
-- whether the ring was full. The notification's scalar subquery runs once, and only if a
-- job was claimed (an idle poll notifies no one).
SELECT c.*, m.next_cursor, m.ring_channels,
       CASE WHEN c.id IS NOT NULL THEN (SELECT pg_notify('pgcue_events', '')) IS NULL END AS notified
FROM (SELECT (SELECT channel_id FROM ring WHERE n = (SELECT last_n FROM ring_size)) AS next_cursor,
             (SELECT channels FROM ring_size) AS ring_channels) m
LEFT JOIN (claimed c JOIN next n ON n.id = c.id) ON true
ORDER BY n.rank, n.priority DESC, n.ring_pos;
