"""Schemathesis against /schema: generated requests find no 5xx and no response that
breaks the documented schema. The two SSE routes are left out (a generated request would
hold a stream open); tests/test_sse.py covers them."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.helpers.apiserver import Api


@pytest.mark.timeout(90)
async def test_schemathesis_finds_no_server_errors(api: Api, tmp_path: Path) -> None:
    st = Path(sys.executable).parent / "st"
    argv = [
        str(st),
        "run",
        f"{api.url}/schema/openapi.json",
        "--checks",
        "not_a_server_error,response_schema_conformance,content_type_conformance,status_code_conformance",
        "--max-examples",
        "8",
        "--seed",
        "1",
        "--generation-deterministic",
        "--exclude-path-regex",
        "/events$",
        "--header",
        f"Authorization: Bearer {api.keys['alice']}",
        "--request-timeout",
        "10",
        "--workers",
        "1",
    ]
    env = dict(os.environ, NO_COLOR="1", SCHEMATHESIS_HOOKS="", HYPOTHESIS_STORAGE_DIRECTORY=str(tmp_path))
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
    assert "No issues found" in text or "passed" in text.lower(), text[-3000:]
    print(text[-2500:])
