-- set_channel_paused: pause or resume claims in a channel (pgcue.set_channel_paused, shared with psql).
-- params: $1 channel text, $2 paused boolean, $3 reason text
SELECT pgcue.set_channel_paused($1, $2, $3) AS paused;
