-- pgcue 0002: who may do what. Users with a plan, the channels they own, and API keys
-- (stored as a SHA-256 of the token, never the token itself).
--
-- Channels are created by an operator (`pgcue keys create --channel C`, or
-- `pgcue channels create`), never implicitly by a first enqueue: a channel id is global,
-- so auto-creating on first use would let any user squat another's channel name.

CREATE TABLE pgcue.users (
    id         text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 200),
    plan       text NOT NULL DEFAULT 'free' CHECK (plan IN ('free', 'paid')),
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgcue.users IS 'API users; the plan gates job types (job_types.plan).';

CREATE TABLE pgcue.channels (
    id         text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 200),
    owner_id   text NOT NULL REFERENCES pgcue.users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgcue.channels IS 'Channels and their owner: a caller sees the jobs of its own channels only.';
CREATE INDEX channels_owner_idx ON pgcue.channels (owner_id);

CREATE TABLE pgcue.api_keys (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash  bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    user_id     text NOT NULL REFERENCES pgcue.users (id) ON DELETE CASCADE,
    admin       boolean NOT NULL DEFAULT false,
    label       text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
COMMENT ON TABLE pgcue.api_keys IS 'Bearer keys: sha256(token) only; an admin key sees every channel.';

-- The SSE poller reads events of transactions it has not seen yet
-- (tx >= xmin of its last snapshot); without this it would scan the whole log.
CREATE INDEX job_events_tx_idx ON pgcue.job_events (tx);
