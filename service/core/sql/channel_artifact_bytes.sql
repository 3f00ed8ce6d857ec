-- channel_artifact_bytes: how many bytes of artifacts a channel keeps.
-- params: $1 channel id text
SELECT bytes FROM pgcue.channel_storage WHERE channel_id = $1;
