-- latest_completed_of_type: a channel's most recent completed job of one type, with its
-- result (the panel's latest proposals). The newest few by creation are read from
-- jobs_channel_type_state_idx and the one that completed last wins, so the read is a
-- few index entries whatever the channel holds.
-- params: $1 channel id text, $2 type text
SELECT * FROM (
    SELECT * FROM pgcue.jobs
    WHERE channel_id = $1 AND type = $2 AND state = 'completed'
    ORDER BY created_at DESC, id DESC
    LIMIT 10
) newest
ORDER BY completed_at DESC, id DESC
LIMIT 1;
