"""Schemathesis, stateful: it follows the links a created job gives (get, cancel, retry,
delete, its stages) with every check it has, and finds no 5xx and no response that
breaks the documented schema. The links are added to the served OpenAPI document here,
from the operations' own ids, so the test follows the routes as they are documented."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.apiserver import Api

# A created job's id feeds these operations (path, method): the life a user drives.
FOLLOW = [
    ("/api/jobs/{job_id}", "get"),
    ("/api/jobs/{job_id}/cancel", "post"),
    ("/api/jobs/{job_id}/retry", "post"),
    ("/api/jobs/{job_id}", "delete"),
]


def narrowed(schema: dict[str, Any]) -> dict[str, Any]:
    """Job types and channels are data, not schema: narrow them to ones alice may use, so
    generated enqueues succeed and the links from a created job get followed."""
    body = schema["paths"]["/api/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    name = body["$ref"].rsplit("/", 1)[1]
    props = schema["components"]["schemas"][name]["properties"]
    props["type"] = {"type": "string", "enum": ["echo", "sleep"]}
    props["channelId"] = {"type": "string", "enum": ["a1", "a2"]}
    return schema


def with_links(schema: dict[str, Any]) -> dict[str, Any]:
    paths = schema["paths"]
    links = {}
    for path, method in FOLLOW:
        operation = paths[path][method]
        links[operation["operationId"]] = {
            "operationId": operation["operationId"],
            "parameters": {"job_id": "$response.body#/job/id"},
        }
    for path, method in [("/api/jobs", "post"), *FOLLOW[1:3]]:
        responses = paths[path][method]["responses"]
        for status in ("200", "201"):
            if status in responses:
                responses[status]["links"] = links
    return schema


@pytest.mark.timeout(120)
async def test_stateful_links_find_no_server_errors(api: Api, tmp_path: Path) -> None:
    async with httpx.AsyncClient(base_url=api.url) as c:
        schema = (await c.get("/schema/openapi.json")).json()
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(with_links(narrowed(schema))))
    argv = [
        str(Path(sys.executable).parent / "st"),
        "run",
        str(path),
        "--url",
        api.url,
        "--phases",
        "stateful",
        "--checks",
        "all",
        # Schema-valid is not always acceptable here: a job type must be registered and a
        # channel must be the caller's, which no JSON Schema can say. Every other check runs.
        "--exclude-checks",
        "positive_data_acceptance",
        "--max-examples",
        "15",
        "--seed",
        "1",
        "--generation-deterministic",
        "--header",
        f"Authorization: Bearer {api.keys['alice']}",
        "--request-timeout",
        "10",
        "--workers",
        "1",
    ]
    env = dict(os.environ, NO_COLOR="1", HYPOTHESIS_STORAGE_DIRECTORY=str(tmp_path))
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 100)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
    covered = re.search(r"API Links:\s+(\d+) covered", text)
    assert covered and int(covered.group(1)) >= 4, text[-3000:]  # get, cancel, retry, delete followed
    print(text[-2500:])
