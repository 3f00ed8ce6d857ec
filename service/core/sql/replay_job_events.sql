-- replay_job_events: the events of one job, or of some channels, that a client whose SSE
-- cursor is (snapshot $4, last id $3, extra ids $5) has not received, in id order, with
-- the snapshot they were read in (see poll_job_events.sql for the cursor's meaning).
-- params: $1 job id uuid (NULL = any), $2 channel ids text[] (NULL = any: admin),
--         $3 last id bigint, $4 snapshot text, $5 extra delivered ids bigint[],
--         $6 page size int
-- Paged: at most $6 events, lowest ids first. The cursor after a page is exact (every
-- undelivered event with an id up to the page's last is in the page), so a replay of any
-- length is read a page at a time, each written to the client before the next is read.
-- plan: a job → job_events_job_idx (job_id) range; channels → BitmapOr of
--       job_events_channel_idx (channel_id, id > $3) and job_events_tx_idx.
SELECT e.id, e.tx::text AS tx, e.job_id, e.channel_id, e.kind, e.data, e.created_at,
       s.snap::text AS snapshot
FROM (SELECT pg_current_snapshot() AS snap) s
LEFT JOIN LATERAL (
    SELECT * FROM pgcue.job_events j
    WHERE ($1::uuid IS NULL OR j.job_id = $1)
      AND ($2::text[] IS NULL OR j.channel_id = ANY($2::text[]))
      AND (j.id > $3
           OR (j.tx >= pg_snapshot_xmin($4::text::pg_snapshot)
               AND NOT pg_visible_in_snapshot(j.tx, $4::text::pg_snapshot)))
      AND NOT (j.id = ANY($5::bigint[]))
    ORDER BY j.id
    LIMIT $6
) e ON true;
