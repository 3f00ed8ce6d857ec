-- lock_outside_work: serialise, for the rest of this transaction, the jobs of type $1 in
-- channel $2 that start outside work, so that record_outside_work's count (run next, with
-- a snapshot taken after this lock) includes every start committed before ours and two
-- workers cannot both take the channel's last place.
-- params: $1 type text, $2 channel text
SELECT pg_advisory_xact_lock(hashtext('pgcue.outside_work'), hashtext($1 || '/' || $2));
