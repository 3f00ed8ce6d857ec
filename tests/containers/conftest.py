"""The container tests run the image with Docker: only under `make test-deploy`, which
installs and starts Docker, builds the image and sets PGCUE_TEST_DOCKER=1 (and
PGCUE_TEST_IMAGE, the tag it built)."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import pytest

IMAGE = os.environ.get("PGCUE_TEST_IMAGE", "pgcue:test")
STAND_IN_POSTGRES = os.environ.get("PGCUE_TEST_POSTGRES_IMAGE", "pgcue-stand-in-postgres:15")
STAND_IN_PROMETHEUS = os.environ.get("PGCUE_TEST_PROMETHEUS_IMAGE", "pgcue-stand-in-prometheus")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("PGCUE_TEST_DOCKER") == "1":
        return
    skip = pytest.mark.skip(reason="container tests run under `make test-deploy` (PGCUE_TEST_DOCKER=1)")
    for item in items:
        if "tests/containers/" in str(item.fspath):
            item.add_marker(skip)


def docker(*args: str, timeout: float = 120, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    """`docker ARGS`, bounded; a failure shows its output."""
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, **kw)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done


def compose_command() -> list[str]:
    """Compose v2 (`docker compose`) where it is installed, else Debian's docker-compose."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    found = shutil.which("docker-compose")
    if found is None:
        pytest.fail("neither `docker compose` nor docker-compose is installed")
    return [found]
