"""The artifact store and settings a handler uses, read once per worker process."""

from __future__ import annotations

import functools

from pgcue.core.artifacts import LocalArtifacts
from pgcue.core.config import Settings, from_env


@functools.cache
def settings() -> Settings:
    return from_env()


@functools.cache
def store() -> LocalArtifacts:
    """The configured store (PGCUE_ARTIFACTS_DIR); local disk for now."""
    return LocalArtifacts(settings().artifacts_dir)
