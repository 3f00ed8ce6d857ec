-- insert_session: a panel sign-in: a session acting with key $2's rights until $3 seconds
-- from now; expired sessions go in the same statement.
-- params: $1 token_hash bytea (sha256 of the cookie's token), $2 key id bigint, $3 seconds float8
-- returns the session's expiry.
WITH expired AS (
    DELETE FROM pgcue.sessions WHERE expires_at < now()
)
INSERT INTO pgcue.sessions (token_hash, key_id, expires_at)
VALUES ($1, $2, now() + make_interval(secs => $3))
RETURNING expires_at;
