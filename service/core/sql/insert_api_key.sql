-- insert_api_key: store a new key's hash for a user.
-- params: $1 token_hash bytea, $2 user id text, $3 admin boolean, $4 label text
INSERT INTO pgcue.api_keys (token_hash, user_id, admin, label) VALUES ($1, $2, $3, $4)
RETURNING id;
