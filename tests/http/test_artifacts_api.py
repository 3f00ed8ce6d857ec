"""GET /api/jobs/{id}/artifact: a real tts job's file, served to its owner with the right
content type and range requests; another user gets 404."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from pgcue.core.config import Settings
from pgcue.core.models import NewJob
from tests.conftest import make_settings
from tests.helpers.apiserver import Api


@pytest.fixture
def settings(database: str, tmp_path: Path) -> Settings:
    return make_settings(database, artifacts_dir=str(tmp_path / "artifacts"))


async def test_artifact_served_with_ranges_to_whoever_may_see_the_job(
    api: Api, queue, watcher, spawn_worker, settings: Settings
) -> None:
    worker = spawn_worker("tts", env={"PGCUE_ARTIFACTS_DIR": settings.artifacts_dir})
    (job_id,) = await queue.enqueue_many([NewJob(type="tts", channel_id="a1", payload={"text": "Hello there."})])
    await worker.started()
    await watcher.states([job_id], {"completed"}, timeout=30)
    on_disk = (Path(settings.artifacts_dir) / f"{job_id}/speech.wav").read_bytes()
    url = f"/api/jobs/{job_id}/artifact"

    async with api.client("alice") as alice, api.client("bob") as bob, api.client() as anonymous:
        whole = await alice.get(url)
        assert whole.status_code == 200
        assert whole.headers["content-type"] == "audio/wav"
        assert whole.headers["accept-ranges"] == "bytes"
        assert whole.content == on_disk

        part = await alice.get(url, headers={"Range": "bytes=100-199"})
        assert part.status_code == 206
        assert part.headers["content-range"] == f"bytes 100-199/{len(on_disk)}"
        assert part.content == on_disk[100:200]
        tail = await alice.get(url, headers={"Range": "bytes=-10"})
        assert tail.status_code == 206 and tail.content == on_disk[-10:]
        beyond = await alice.get(url, headers={"Range": f"bytes={len(on_disk)}-"})
        assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(on_disk)}"

        named = await alice.get(url, params={"name": "speech.wav"})
        assert named.status_code == 200 and named.content == on_disk
        assert (await alice.get(url, params={"name": "../../etc/passwd"})).status_code == 404

        # Another user's job is not found, like a missing one; no key is 401.
        assert (await bob.get(url)).status_code == 404
        assert (await alice.get(f"/api/jobs/{uuid.uuid4()}/artifact")).status_code == 404
        assert (await anonymous.get(url)).status_code == 401
