"""The package as a studio installs it: a wheel built from the repository, installed into a
fresh virtualenv outside the checkout from a wheelhouse with no index, migrates an empty
database from the migrations it ships, runs a worker that completes a job, and serves the
Jobs panel (its templates and static files are package data).

Run by `make test-package` (it builds wheels; `make test` leaves it out)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import venv
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.timeout(600)
WHEELHOUSE = Path(os.environ.get("PGCUE_WHEELHOUSE", ROOT / "build" / "wheelhouse"))


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, **kw)  # type: ignore[call-overload]
    assert result.returncode == 0, f"{argv}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result  # type: ignore[no-any-return]


def test_a_wheel_installed_outside_the_checkout_migrates_and_runs_a_worker(empty_database: str, tmp_path: Path) -> None:
    # The project's wheel, beside the wheels of everything constraints.txt pins (make wheelhouse).
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(WHEELHOUSE), str(ROOT)])
    wheels = sorted(WHEELHOUSE.glob("pgcue-*.whl"))
    assert wheels, "no pgcue wheel was built"
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    _run([python, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(WHEELHOUSE), "pgcue[server]"])
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGCUE_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(PGCUE_DATABASE_URL=empty_database, PGCUE_LOG_FORMAT="json", PGCUE_ARTIFACTS_DIR=str(outside / "a"))
    pgcue = str(env_dir / "bin" / "pgcue")

    where = _run(
        [python, "-c", "import pgcue, pgcue.migrations as m; print(pgcue.__file__, m.__path__[0])"],
        cwd=outside,
        env=env,
    )
    assert str(env_dir) in where.stdout and str(ROOT) not in where.stdout  # the installed copy, not the checkout
    migrated = _run([pgcue, "migrate"], cwd=outside, env=env)
    assert "applied 0001_core" in migrated.stdout
    _run([pgcue, "migrate", "--check"], cwd=outside, env=env)
    public = _run(
        [python, "-c", "from pgcue import job_type, JobContext, Result, PermanentError, Queue, pipeline, Stage"],
        cwd=outside,
        env=env,
    )
    assert public.returncode == 0

    worker = subprocess.Popen([pgcue, "worker", "--type", "echo"], cwd=outside, env=env, stderr=subprocess.PIPE)
    try:
        done = _run(
            [pgcue, "jobs", "enqueue", "--type", "echo", "--channel", "demo", "--payload", '{"hi": 1}', "--wait", "60"],
            cwd=outside,
            env=env,
        )
        assert '"state": "completed"' in done.stdout and '"hi": 1' in done.stdout
    finally:
        worker.terminate()
        worker.wait(30)
    _serves_the_panel(pgcue, outside, env)


def _serves_the_panel(pgcue: str, cwd: Path, env: dict[str, str]) -> None:
    """The installed copy serves the Jobs panel: its templates and static files are in the wheel."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [pgcue, "serve", "--host", "127.0.0.1", "--port", str(port)], cwd=cwd, env=env, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "pgcue serve did not come up"
            time.sleep(0.2)
        login = httpx.get(f"{url}/ui/login")
        assert login.status_code == 200 and "Sign in to the Jobs panel" in login.text
        assets = re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', login.text)
        assert len(assets) >= 3, assets  # the script, the style sheet, the icon
        for path in assets:
            answer = httpx.get(url + path)
            assert answer.status_code == 200 and answer.content, path
        assert httpx.get(f"{url}/ui", headers={"Accept": "text/html"}).status_code == 303  # private: sign in first
    finally:
        server.terminate()
        server.wait(30)


def test_the_client_alone_installs_none_of_the_server(tmp_path: Path) -> None:
    """`pip install pgcue[client]` (or plain `pgcue`): the client and its HTTP library, no
    database driver, no web framework; the command line says what to install."""
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(WHEELHOUSE), str(ROOT)])
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    _run([python, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(WHEELHOUSE), "pgcue[client]"])
    installed = _run([python, "-m", "pip", "list", "--format=freeze"], cwd=tmp_path).stdout.lower()
    for server_only in ("asyncpg", "psycopg", "litestar", "uvicorn", "structlog", "prometheus", "jsonschema"):
        assert server_only not in installed, installed
    probe = (
        "import sys, pgcue.client; from pgcue import Client, AsyncClient; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('asyncpg', 'litestar', 'psycopg')))"
    )
    assert _run([python, "-c", probe], cwd=tmp_path).stdout.strip() == "[]"
    cli = subprocess.run([str(env_dir / "bin" / "pgcue"), "types"], capture_output=True, text=True, timeout=60)
    assert cli.returncode == 1 and "pip install 'pgcue[server]'" in cli.stderr and cli.stderr.count("\n") == 1
