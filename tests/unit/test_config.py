"""Settings from the environment, without a database: types, lists, and a one-line error
naming the variable."""

from __future__ import annotations

import pytest

from pgcue.core.config import ConfigError, Settings, from_env


def test_defaults_and_overrides() -> None:
    s = from_env({})
    assert s == Settings()
    s = from_env({"PGCUE_PORT": "9001", "PGCUE_IMPORTS": " a.b , c ", "DATABASE_URL": "postgresql://x/y"})
    assert s.port == 9001 and s.imports == ("a.b", "c") and s.database_url == "postgresql://x/y"
    assert from_env({"DATABASE_URL": "postgresql://x/y", "PGCUE_DATABASE_URL": "postgresql://z/w"}).database_url == (
        "postgresql://z/w"
    )
    assert s.channel("wake") == "pgcue_wake"


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"PGCUE_PORT": "eighty"}, "PGCUE_PORT"),
        ({"PGCUE_SCHEMA": "Robert'); DROP"}, "PGCUE_SCHEMA"),
        ({"PGCUE_POLL_INTERVAL": "0"}, "PGCUE_POLL_INTERVAL"),
        ({"PGCUE_SSE_STREAMS_PER_KEY": "0"}, "PGCUE_SSE_STREAMS_PER_KEY"),
        ({"PGCUE_ARTIFACT_QUOTA_BYTES": "-1"}, "PGCUE_ARTIFACT_QUOTA_BYTES"),
        ({"PGCUE_CLAIM_AHEAD_SECONDS": "-0.1"}, "PGCUE_CLAIM_AHEAD_SECONDS"),
        ({"PGCUE_CLAIM_AHEAD_SECONDS": "soon"}, "PGCUE_CLAIM_AHEAD_SECONDS"),
        ({"PGCUE_LOG_FORMAT": "xml"}, "PGCUE_LOG_FORMAT"),
    ],
)
def test_a_bad_value_names_its_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        from_env(env)
