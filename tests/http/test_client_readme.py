"""The README's "streaming a job's output into your own UI" example,
run as written against the real API and a real worker: its frames carry the job's output
and end, and a relay resumed from one of its ids sends exactly the rest."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.helpers.apiserver import Api

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(60)


def snippet(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    (block,) = [b for b in blocks if marker in b]
    return block


def frames(text: str) -> list[tuple[str, str, Any]]:
    out = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        out.append((fields["id"], fields["event"], msgspec.json.decode(fields["data"])))
    return out


async def test_the_relay_example_streams_the_output_and_resumes(
    api: Api, spawn_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGCUE_URL", api.url)
    monkeypatch.setenv("PGCUE_API_KEY", api.keys["alice"])
    example: dict[str, Any] = {}
    exec(compile(snippet("async def job_output_as_sse"), "README.md", "exec"), example)
    relay = example["job_output_as_sse"]
    await spawn_worker("t-stages").started()
    job = await example["pgcue"].enqueue("t-stages", "a1")
    try:
        sent = frames("".join([frame async for frame in relay(job.id)]))
        assert (
            "".join(d["text"] for _, kind, d in sent if kind == "output") == "draft done\nreview done\npublish done\n"
        )
        assert [d["stage"] for _, kind, d in sent if kind == "stage"] == ["draft", "review", "publish"]
        assert [d["state"] for _, kind, d in sent if kind == "status"] == ["queued", "running", "completed"]
        assert sent[-1][1:] == ("status", {"state": "completed", "error": None, "resultPath": None})

        # The browser reconnects with the id of the last frame it got: the relay sends the rest.
        resumed = frames("".join([frame async for frame in relay(job.id, sent[3][0])]))
        assert [f[1:] for f in resumed] == [f[1:] for f in sent[4:]]  # the ids are cursors read anew
    finally:
        await example["pgcue"].aclose()
