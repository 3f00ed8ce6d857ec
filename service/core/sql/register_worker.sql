-- register_worker: a worker process announces itself (or says it is back).
-- params: $1 id, $2 hostname, $3 pid, $4 types text[], $5 concurrency
INSERT INTO pgcue.workers (id, hostname, pid, types, concurrency)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (id) DO UPDATE
SET last_seen_at = now(), stopped_at = NULL, types = EXCLUDED.types,
    concurrency = EXCLUDED.concurrency;
