-- poll_job_events: every event the SSE poller has not delivered yet, with the snapshot the
-- rows were read in. The poller's cursor (snapshot $2, last id $1) means "delivered =
-- events visible in $2"; an event it lacks either has a higher id, or was written by a
-- transaction still running at $2 (an id can commit after higher ids: identity values
-- are taken before commit), which is exactly "tx >= xmin($2) and not visible in $2".
-- Returning pg_current_snapshot() from the same statement makes the new cursor match
-- the rows read. One row with NULL event columns when nothing is new.
-- params: $1 last id bigint, $2 snapshot text (pg_snapshot)
-- Hot path (once per debounced NOTIFY per API process). Plan:
--   Nested Loop Left Join
--     -> Result (the snapshot)
--     -> Sort (id)
--          -> Bitmap Heap Scan on job_events
--               -> BitmapOr
--                    -> Bitmap Index Scan on job_events_pkey (id > $1)
--                    -> Bitmap Index Scan on job_events_tx_idx (tx >= xmin($2))
SELECT e.id, e.tx::text AS tx, e.job_id, e.channel_id, e.kind, e.data, e.created_at,
       s.snap::text AS snapshot
FROM (SELECT pg_current_snapshot() AS snap) s
LEFT JOIN LATERAL (
    SELECT * FROM pgcue.job_events j
    WHERE j.id > $1
       OR (j.tx >= pg_snapshot_xmin($2::text::pg_snapshot)
           AND NOT pg_visible_in_snapshot(j.tx, $2::text::pg_snapshot))
    ORDER BY j.id
) e ON true;
