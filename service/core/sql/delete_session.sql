-- delete_session: a panel sign-out; the session's cookie no longer works.
-- params: $1 token_hash bytea
DELETE FROM pgcue.sessions WHERE token_hash = $1;
