-- record_starts: note $2 starts of rate-limited type $1 (same transaction as the claim),
-- and forget starts older than the type's window.
-- params: $1 type text, $2 count int
WITH forgotten AS (
    DELETE FROM pgcue.rate_starts s
    USING pgcue.job_types t
    WHERE s.type = $1 AND t.name = $1
      AND s.started_at <= now() - make_interval(secs => t.rate_period_seconds)
)
INSERT INTO pgcue.rate_starts (type, started_at)
SELECT $1, now() FROM generate_series(1, $2);
