-- list_paused_channels: channels whose claims are paused.
SELECT channel_id, paused_at, reason FROM pgcue.paused_channels ORDER BY channel_id;
