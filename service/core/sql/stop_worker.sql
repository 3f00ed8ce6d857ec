-- stop_worker: a worker process says it has stopped.
-- params: $1 id
UPDATE pgcue.workers SET stopped_at = now(), last_seen_at = now() WHERE id = $1;
