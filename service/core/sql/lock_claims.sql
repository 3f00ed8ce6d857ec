-- lock_claims: serialise claims of one type across the fleet for the rest of this
-- transaction. Taken only for types with a fleet-wide, per-channel or rate limit, where
-- SKIP LOCKED alone would let two workers each see room and together overspend it.
-- params: $1 type text
SELECT pg_advisory_xact_lock(hashtext('pgcue.claim'), hashtext($1));
