-- set_type_paused: pause or resume claims of a type (pgcue.set_type_paused, shared with psql).
-- params: $1 type text, $2 paused boolean
-- returns: changed = NULL when there is no such type.
SELECT pgcue.set_type_paused($1, $2) AS changed;
