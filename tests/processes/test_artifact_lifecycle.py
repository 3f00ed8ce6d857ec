"""Artifacts go with their jobs: deleting a job (DELETE, a channel's clear, prune, psql)
removes its folder, also when no worker was running at the time; a channel's quota refuses
a file past it and leaves nothing behind; a job reads only its own channel's artifacts;
and what a browser would run is served as an attachment that cannot be sniffed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest

from pgcue.core.config import Settings
from pgcue.core.models import NewJob
from pgcue.core.queue import Queue
from tests.conftest import Watcher, make_settings
from tests.helpers.apiserver import Api
from tests.helpers.typeservers import send, serve

pytestmark = pytest.mark.timeout(120)
SWEEP = {"PGCUE_ARTIFACT_SWEEP_INTERVAL": "0.2"}


@pytest.fixture
def settings(database: str, tmp_path: Path) -> Settings:
    return make_settings(database, artifacts_dir=str(tmp_path / "artifacts"))


async def _gone(watcher: Watcher, folder: Path, timeout: float = 20.0) -> None:
    """Wait until `folder` is removed: the sweeper deletes the pending row after it removed
    the folder, so the row's absence is the event to wait for."""
    await watcher.until(
        "SELECT count(*) = 0 FROM pgcue.artifact_deletions WHERE job_id = $1::uuid", folder.name, timeout=timeout
    )
    assert not folder.exists()


async def _tts(queue: Queue, watcher: Watcher, channel: str, text: str) -> Any:
    (job_id,) = await queue.enqueue_many([NewJob(type="tts", channel_id=channel, payload={"text": text})])
    await watcher.states([job_id], timeout=40)
    return await queue.get(job_id)


async def test_deleting_jobs_removes_their_artifacts_however_they_go(
    api: Api, queue: Queue, pool: asyncpg.Pool, watcher: Watcher, spawn_worker: Any, settings: Settings
) -> None:
    root = Path(settings.artifacts_dir)
    worker = spawn_worker("tts", env={"PGCUE_ARTIFACTS_DIR": str(root), **SWEEP})
    await worker.started()
    jobs = [await _tts(queue, watcher, "a1", f"Take {n}.") for n in range(4)]
    folders = [root / str(j.id) for j in jobs]
    assert all(j.state == "completed" for j in jobs) and all((f / "speech.wav").is_file() for f in folders)
    used = await queue.artifacts.channel_usage("a1")
    assert used == sum((f / "speech.wav").stat().st_size for f in folders)

    async with api.client("alice") as c:
        assert (await c.delete(f"/api/jobs/{jobs[0].id}")).status_code == 204
    await _gone(watcher, folders[0])
    await pool.execute("SELECT pgcue.delete_jobs(ARRAY[$1::uuid])", jobs[1].id)  # psql's way
    await _gone(watcher, folders[1])
    await pool.execute("UPDATE pgcue.jobs SET completed_at = now() - interval '30 days' WHERE id = $1", jobs[2].id)
    assert await queue.upkeep.prune(retention_seconds=86400) == 1
    await _gone(watcher, folders[2])
    async with api.client("alice") as c:
        assert (await c.post("/api/channels/a1/clear")).json()["deleted"] == 1
    await _gone(watcher, folders[3])
    assert await queue.artifacts.channel_usage("a1") == 0
    assert sorted(p.name for p in root.iterdir()) == []


async def test_a_delete_while_no_worker_runs_is_swept_later(
    queue: Queue, watcher: Watcher, spawn_worker: Any, settings: Settings
) -> None:
    root = Path(settings.artifacts_dir)
    first = spawn_worker("tts", env={"PGCUE_ARTIFACTS_DIR": str(root), **SWEEP})
    await first.started()
    job = await _tts(queue, watcher, "a1", "Keep me until the end.")
    first.kill()  # nobody sweeps now
    await queue.delete(job.id)
    folder = root / str(job.id)
    assert folder.is_dir()  # still there: the deletion is recorded, not lost
    second = spawn_worker("echo", env={"PGCUE_ARTIFACTS_DIR": str(root), **SWEEP})
    await second.started()
    await _gone(watcher, folder)


async def test_a_channels_quota_refuses_a_file_past_it_and_leaves_nothing(
    queue: Queue, watcher: Watcher, spawn_worker: Any, settings: Settings
) -> None:
    root = Path(settings.artifacts_dir)
    worker = spawn_worker(
        "tts", env={"PGCUE_ARTIFACTS_DIR": str(root), "PGCUE_ARTIFACT_QUOTA_BYTES": "1000000", **SWEEP}
    )
    await worker.started()
    text = "This sentence is long enough to need a lot of audio to say it. " * 6  # about 0.8 MB of WAV
    first = await _tts(queue, watcher, "a1", text)
    assert first.state == "completed", first.error_message
    size = (root / first.result_path).stat().st_size
    assert 500_000 < size < 1_000_000, size
    second = await _tts(queue, watcher, "a1", text)  # together they would pass the quota
    assert second.state == "failed" and second.attempts == 1  # no retry can make room
    assert "quota" in second.error_message and "a1" in second.error_message
    assert not (root / str(second.id) / "speech.wav").exists()
    assert await queue.artifacts.channel_usage("a1") == size  # the refused file was never counted
    other = await _tts(queue, watcher, "b1", text)  # another channel has its own quota
    assert other.state == "completed", other.error_message
    await queue.delete(first.id)
    await _gone(watcher, root / str(first.id))
    again = await _tts(queue, watcher, "a1", text)  # room again
    assert again.state == "completed", again.error_message


async def test_a_job_reads_only_its_own_channels_artifacts(
    queue: Queue, watcher: Watcher, spawn_worker: Any, settings: Settings
) -> None:
    root = Path(settings.artifacts_dir)
    env = {"PGCUE_ARTIFACTS_DIR": str(root)}
    tts = spawn_worker("tts", env=env)
    render = spawn_worker("render", env=env)
    await tts.started()
    theirs = await _tts(queue, watcher, "b1", "Bob's private voice-over.")
    mine = await _tts(queue, watcher, "a1", "Alice's own voice-over.")
    await render.started()
    scenes = [{"color": "#203040", "duration": 0.5}]
    ids = await queue.enqueue_many(
        [
            NewJob(type="render", channel_id="a1", payload={"scenes": scenes, "audio": theirs.result_path}),
            NewJob(type="render", channel_id="a1", payload={"scenes": scenes, "audio": mine.result_path}),
        ]
    )
    await watcher.states(ids, timeout=60)
    stolen, own = [await queue.get(i) for i in ids]
    assert stolen.state == "failed" and stolen.attempts == 1
    assert "no artifact" in stolen.error_message and "in this channel" in stolen.error_message
    assert not (root / str(stolen.id) / "render.mp4").exists()
    assert own.state == "completed", own.error_message


async def test_an_artifact_a_browser_would_run_is_an_attachment(
    api: Api, queue: Queue, watcher: Watcher, spawn_worker: Any, settings: Settings
) -> None:
    page = b"<html><script>fetch('/api/jobs')</script></html>"
    routes = {
        "/page.html": lambda h: send(h, 200, page, "text/html"),
        "/pic.svg": lambda h: send(h, 200, b"<svg/>", "image/svg+xml"),
    }
    with serve(routes) as (base, _server):
        worker = spawn_worker(
            "resource-download",
            env={"PGCUE_ARTIFACTS_DIR": settings.artifacts_dir, "PGCUE_FETCH_ALLOW_HOSTS": "127.0.0.1"},
        )
        payload = {"urls": [f"{base}/page.html", f"{base}/pic.svg"], "allow": ["text/html", "image/*"]}
        (job_id,) = await queue.enqueue_many([NewJob(type="resource-download", channel_id="a1", payload=payload)])
        await worker.started()
        await watcher.states([job_id], {"completed"}, timeout=30)
    async with api.client("alice") as c:
        for name, kind in (("page.html", "text/html"), ("pic.svg", "image/svg+xml")):
            r = await c.get(f"/api/jobs/{job_id}/artifact", params={"name": name})
            assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
            assert r.headers["content-disposition"].startswith("attachment")
            assert r.headers["x-content-type-options"] == "nosniff"
            assert "sandbox" in r.headers["content-security-policy"]
