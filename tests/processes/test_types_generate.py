"""generate through real worker processes, against a fake Replicate-compatible provider on
loopback (tests/helpers/fakeprovider.py) that serves real media: each provider outcome
ends the job in the state and with the message docs/job-types.md promises; outputs are
valid files with the right content type; a prediction is created once, even across a
worker SIGKILLed mid-poll; a waiting job holds no worker slot; a channel runs no more
generations than its limit; cancels reach the provider."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from pgcue.core.artifacts import content_type
from pgcue.core.models import Job, NewJob
from pgcue.core.queue import Queue
from tests.conftest import Watcher
from tests.helpers.apiserver import Api
from tests.helpers.fakeprovider import TOKEN, FakeProvider, fake_provider
from tests.helpers.media_checks import ffprobe, job_files

POLL = 0.2  # PGCUE_GENERATE_POLL_INTERVAL in these tests (the default is 4 s)


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[bytes, str]]:
    """Real files, made by the tools a studio uses, served by the fake provider."""
    d = tmp_path_factory.mktemp("media")
    _run("ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "color=c=0x1d3557:s=64x48", "-frames:v", "1",
         str(d / "image.png"))  # fmt: skip
    _run("ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc=duration=1:size=160x120:rate=10",
         "-pix_fmt", "yuv420p", "-c:v", "libx264", str(d / "video.mp4"))  # fmt: skip
    _run("sox", "-n", "-r", "16000", "-c", "1", "-b", "16", str(d / "speech.wav"), "synth", "1", "sine", "440")
    png, mp4, wav = ((d / n).read_bytes() for n in ("image.png", "video.mp4", "speech.wav"))
    return {
        "image.png": (png, "image/png"),
        "video.mp4": (mp4, "video/mp4"),
        "speech.wav": (wav, "audio/wav"),
        "song.wav": (wav, "application/octet-stream"),  # a generic type: read from the URL's extension
        "page.html": (b"<html></html>", "text/html; charset=utf-8"),
    }


def worker_env(fake: FakeProvider, artifacts: Path, **more: str) -> dict[str, str]:
    return {
        "PGCUE_GENERATE_BASE_URL": fake.base_url,
        "PGCUE_GENERATE_API_TOKEN": TOKEN,
        "PGCUE_GENERATE_POLL_INTERVAL": str(POLL),
        # The fake serves the outputs on loopback, which a download may reach only when an
        # operator allows it (tests/processes/test_types_download.py does the same).
        "PGCUE_FETCH_ALLOW_HOSTS": "127.0.0.1",
        "PGCUE_ARTIFACTS_DIR": str(artifacts),
        **more,
    }


def spawn(spawn_worker: Any, fake: FakeProvider, artifacts: Path, *extra: str, **env: str) -> Any:
    return spawn_worker(
        "generate",
        extra=["--import", "tests.helpers.generateoverrides", *extra],
        env=worker_env(fake, artifacts, **env),
    )


def job(marker: str, kind: str = "image", channel: str = "c", **script: Any) -> NewJob:
    """A generate job whose prediction follows `script` at the fake provider."""
    return NewJob(
        type="generate",
        channel_id=channel,
        payload={
            "kind": kind,
            "model": "studio/test-model",
            "input": {"prompt": marker, "fake": {"marker": marker, **script}},
        },
    )


async def events(pool: asyncpg.Pool, job_id: uuid.UUID) -> list[tuple[str, dict[str, Any]]]:
    rows = await pool.fetch("SELECT kind, data FROM pgcue.job_events WHERE job_id = $1 ORDER BY id", job_id)
    return [(r["kind"], r["data"] if isinstance(r["data"], dict) else json.loads(r["data"])) for r in rows]


async def state_of(pool: asyncpg.Pool, job_id: uuid.UUID) -> str:
    return str(await pool.fetchval("SELECT state FROM pgcue.jobs WHERE id = $1", job_id))


async def test_image_video_and_audio_arrive_as_valid_artifacts_after_polls(
    queue: Queue, pool: asyncpg.Pool, watcher: Watcher, spawn_worker: Any, media: Any, tmp_path: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    cases = {
        "image": job("img", "image", polls=2, outputs=["image.png"]),
        "video": job("vid", "video", polls=3, outputs=["video.mp4"]),
        "talking-head": job("head", "talking-head", polls=1, outputs=["video.mp4"]),
        "audio": job("aud", "audio", polls=2, outputs=["song.wav"]),
        "voice": job("voc", "voice", polls=2, outputs=["speech.wav", "image.png"]),  # a cover image beside it
    }
    with fake_provider(media) as fake:
        worker = spawn(spawn_worker, fake, artifacts)
        ids = await queue.enqueue_many(list(cases.values()))
        await worker.started()
        await watcher.states(ids, timeout=60)
        jobs: dict[str, Job] = dict(zip(cases, [await queue.get(i) for i in ids], strict=True))
        for kind, j in jobs.items():
            assert j.state == "completed", (kind, j.error_message, j.errors)
            assert j.attempts == 1 and j.errors == [], (kind, j.errors)
            marker = cases[kind].payload["input"]["fake"]["marker"]
            (create,) = fake.creates(marker)  # one prediction per job
            assert create.headers["authorization"] == f"Bearer {TOKEN}"
            assert create.headers["idempotency-key"].startswith(f"pgcue-{j.id}-")
            assert create.path == "/v1/models/studio/test-model/predictions"
            prediction = fake.prediction_of(marker)
            assert prediction is not None and j.result["predictionId"] == prediction.id
            polls = cases[kind].payload["input"]["fake"]["polls"]
            assert len(fake.gets(prediction.id)) == polls + 1 == j.result["polls"]
        # The token goes to the provider's API only: never to the output URLs, never to a log.
        assert all("authorization" not in c.headers for c in fake.calls if c.path.startswith("/files/"))
        assert TOKEN not in "\n".join(worker.raw)

    expected = {
        "image": [("image.png", "image/png", "png")],
        "video": [("video.mp4", "video/mp4", "h264")],
        "talking-head": [("talking-head.mp4", "video/mp4", "h264")],
        "audio": [("audio.wav", "audio/wav", "pcm_s16le")],
        "voice": [("voice-1.wav", "audio/wav", "pcm_s16le"), ("voice-2.png", "image/png", "png")],
    }
    for kind, files in expected.items():
        j = jobs[kind]
        assert [(f["name"], f["contentType"]) for f in j.result["files"]] == [(n, t) for n, t, _ in files]
        assert j.result_path == f"{j.id}/{files[0][0]}"  # the file of the kind's own family
        assert job_files(artifacts, j.id) == sorted(n for n, _, _ in files)  # nothing half-written left
        for name, ctype, codec in files:
            assert content_type(name) == ctype  # what GET /api/jobs/{id}/artifact serves it as
            probe = ffprobe(artifacts / str(j.id) / name)
            assert probe["streams"][0]["codec_name"] == codec, (kind, name, probe)
            if ctype.startswith(("video/", "audio/")):
                assert 0.8 < float(probe["format"]["duration"]) < 1.3, (kind, name)
        assert (artifacts / str(j.id) / files[0][0]).stat().st_size == j.result["files"][0]["size"]

    # What a user watching the job saw: the provider's log lines as output, its progress,
    # and one status change per real change (no running/queued flapping at every poll).
    seen = await events(pool, jobs["video"].id)
    statuses = [(d["state"], d.get("waitingFor")) for k, d in seen if k == "job:status"]
    assert statuses == [("queued", None), ("running", None), ("queued", "provider"), ("completed", None)]
    output = "".join(d["text"] for k, d in seen if k == "job:output")
    assert "prediction p" in output and "step 1/4 25%" in output and "step 3/4 75%" in output
    progress = [d["progress"] for k, d in seen if k == "job:progress"]
    assert progress == sorted(progress) and progress[-1] == 100 and any(0 < p < 90 for p in progress)
    # Its attempt went on across the polls: started when first claimed, not at the last poll.
    video = jobs["video"]
    assert video.duration_ms is not None and video.duration_ms >= 3 * POLL * 1000


async def test_each_provider_outcome_ends_in_its_state_and_message(
    queue: Queue, pool: asyncpg.Pool, watcher: Watcher, spawn_worker: Any, media: Any, tmp_path: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    policy = "Input violates the content policy"
    cases = {
        "failed": job("fail", polls=1, outcome="failed", error=policy),
        "401": job(
            "key",
            createErrors=[[401, {"title": "Unauthenticated", "detail": "Invalid token.", "status": 401}, {}]],
            always=True,
        ),
        "429 on create": job(
            "rate",
            outputs=["image.png"],
            createErrors=[[429, {"detail": "Request was throttled."}, {"Retry-After": "1"}]],
        ),
        "503 on create": job(
            "busy", outputs=["image.png"], createErrors=[[503, {"detail": "Service unavailable"}, {}]]
        ),
        "503 on a poll": job("flaky", polls=2, outputs=["image.png"], pollErrors=[[503, {"detail": "upstream"}, {}]]),
        "429 on a poll": job(
            "slow-down",
            polls=1,
            outputs=["image.png"],
            pollErrors=[[429, {"detail": "throttled"}, {"Retry-After": "1"}]],
        ),
        "model unavailable": job(
            "cold", polls=1, outputs=["image.png"], failFirst=1, error="Model is temporarily unavailable"
        ),
        "canceled at the provider": job("gone", polls=1, outcome="canceled"),
        "output not media": job("html", polls=0, outputs=["page.html"]),
        "output on a private address": job("ssrf", polls=0, outputs=["http://169.254.169.254/latest/meta-data.png"]),
    }
    with fake_provider(media) as fake:
        worker = spawn(spawn_worker, fake, artifacts)
        ids = await queue.enqueue_many(list(cases.values()))
        await worker.started()
        await watcher.states(ids, timeout=60)
        jobs = dict(zip(cases, [await queue.get(i) for i in ids], strict=True))

        def outcome(case: str) -> tuple[str, str | None, int]:
            j = jobs[case]
            return j.state, j.error_message, j.attempts

        # failed: the provider's own message, no retry.
        assert outcome("failed") == ("failed", policy, 1)
        # 401: permanent, saying the key is the problem.
        state, message, attempts = outcome("401")
        assert state == "failed" and attempts == 1 and len(fake.creates("key")) == 1
        assert message is not None and message.startswith("invalid or expired API key") and "Invalid token." in message
        # 429 on create: retried, not sooner than Retry-After; a second create with the same key.
        j = jobs["429 on create"]
        assert j.state == "completed" and j.attempts == 2, j.errors
        assert "429" in j.errors[0]["error"] and "Retry-After 1 s" in j.errors[0]["error"]
        first, second = fake.creates("rate")
        assert second.at - first.at >= 1.0
        assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
        # 503 on create: a transient retry with backoff.
        j = jobs["503 on create"]
        assert j.state == "completed" and j.attempts == 2 and "503" in j.errors[0]["error"], j.errors
        # 503 on a poll: retried, and the retry polls the same prediction (created once).
        j = jobs["503 on a poll"]
        assert j.state == "completed" and j.attempts == 2 and "503" in j.errors[0]["error"], j.errors
        assert len(fake.creates("flaky")) == 1
        # 429 on a poll: the next poll waits for Retry-After; no attempt is charged.
        j = jobs["429 on a poll"]
        assert j.state == "completed" and j.attempts == 1 and j.errors == [], j.errors
        prediction = fake.prediction_of("slow-down")
        assert prediction is not None
        throttled, after = fake.gets(prediction.id)[:2]
        assert throttled.status == 429 and after.at - throttled.at >= 1.0
        # A model that is only unavailable now: a new prediction on the retry.
        j = jobs["model unavailable"]
        assert j.state == "completed" and j.attempts == 2, j.errors
        assert "temporarily unavailable" in j.errors[0]["error"]
        first, second = fake.creates("cold")
        assert first.headers["idempotency-key"] != second.headers["idempotency-key"]
        # Cancelled at the provider: the job ends cancelled, saying so.
        assert outcome("canceled at the provider") == ("cancelled", "Prediction cancelled at the provider", 1)
        # Outputs go through the safe downloader: only media, only public addresses.
        state, message, _ = outcome("output not media")
        assert state == "failed" and message is not None and "content type text/html is not" in message
        state, message, _ = outcome("output on a private address")
        assert state == "failed" and message is not None and "has no public address" in message
        assert not any(c.path.startswith("/latest") for c in fake.calls)
        for case in ("output not media", "output on a private address", "failed"):
            assert job_files(artifacts, jobs[case].id) == [], case


async def test_a_cancel_cancels_the_prediction_at_the_provider(
    queue: Queue, pool: asyncpg.Pool, watcher: Watcher, spawn_worker: Any, media: Any, tmp_path: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    with fake_provider(media) as fake:
        worker = spawn(spawn_worker, fake, artifacts)
        parked, polling = await queue.enqueue_many(
            [job("parked", outcome="never"), job("polling", outcome="never", gateAt=2)]
        )
        await worker.started()

        # Cancelled between polls: the job is parked, queued; the cancel wakes it instead of
        # ending it at once, and its next claim cancels the prediction, then the job.
        await asyncio.to_thread(fake.wait, lambda: (p := fake.prediction_of("parked")) and len(fake.gets(p.id)) >= 2)
        await watcher.until(
            "SELECT true FROM pgcue.jobs WHERE id = $1 AND state = 'queued' AND waiting_for = 'provider'", parked
        )
        asked = await queue.cancel(parked)
        # Not ended at once (nobody would then stop the prediction): asked, like a running job.
        assert asked.cancel_requested and asked.state in ("queued", "running")

        # Cancelled mid-poll: the request to the provider is held open; the cancel stops it
        # at once and the prediction is cancelled.
        await asyncio.to_thread(fake.wait, lambda: fake.gated)
        assert await state_of(pool, polling) == "running"
        await queue.cancel(polling)
        await watcher.states([parked, polling], timeout=30)

        for job_id, marker in ((parked, "parked"), (polling, "polling")):
            j = await queue.get(job_id)
            assert j.state == "cancelled" and j.error_message == "Job cancelled by user request", (marker, j)
            prediction = fake.prediction_of(marker)
            assert prediction is not None and prediction.status == "canceled"
            assert len(fake.cancels(prediction.id)) == 1, marker
            assert len(fake.creates(marker)) == 1
        fake.release()


async def test_a_worker_killed_mid_poll_is_rescued_and_polls_the_same_prediction(
    queue: Queue, pool: asyncpg.Pool, watcher: Watcher, spawn_worker: Any, media: Any, tmp_path: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    with fake_provider(media) as fake:
        first = spawn(spawn_worker, fake, artifacts, PGCUE_TEST_GENERATE_LEASE="2")
        (job_id,) = await queue.enqueue_many([job("crash", "video", polls=3, outputs=["video.mp4"], gateAt=2)])
        await first.started()
        await asyncio.to_thread(fake.wait, lambda: fake.gated)  # the second poll is in flight
        assert await state_of(pool, job_id) == "running"
        first.signal(signal.SIGKILL)
        await first.wait_exit(10)
        fake.release()  # the dead worker's request ends; nobody reads its answer

        second = spawn(spawn_worker, fake, artifacts, PGCUE_TEST_GENERATE_LEASE="2")
        await second.started()
        await watcher.states([job_id], timeout=40)
        j = await queue.get(job_id)
        prediction = fake.prediction_of("crash")

    assert j.state == "completed", (j.error_message, j.errors)
    assert [e["kind"] for e in j.errors] == ["rescued"]  # the lease expired; the job ran again
    assert len(fake.creates("crash")) == 1 and len(fake.creates()) == 1  # one prediction, never two
    assert prediction is not None and j.result["predictionId"] == prediction.id
    polled = {c.prediction for c in fake.calls if c.method == "GET" and c.path.startswith("/v1/")}
    assert polled == {prediction.id}
    probe = ffprobe(artifacts / j.result_path)
    assert probe["streams"][0]["codec_name"] == "h264"


async def test_waiting_jobs_hold_no_worker_slot(
    queue: Queue, pool: asyncpg.Pool, watcher: Watcher, spawn_worker: Any, media: Any, tmp_path: Path
) -> None:
    """Three predictions in flight on a worker with one slot: each is polled in turn, and
    another job is claimed, polled and completed meanwhile."""
    artifacts = tmp_path / "artifacts"
    with fake_provider(media) as fake:
        worker = spawn(spawn_worker, fake, artifacts, "--concurrency", "1")
        waiting = await queue.enqueue_many([job(f"wait-{i}", outcome="never") for i in range(3)])
        await worker.started()

        def each_polled_twice() -> bool:
            found = [fake.prediction_of(f"wait-{i}") for i in range(3)]
            return all(p is not None and len(fake.gets(p.id)) >= 2 for p in found)

        await asyncio.to_thread(fake.wait, each_polled_twice, 30)
        (quick,) = await queue.enqueue_many([job("quick", polls=1, outputs=["image.png"])])
        await watcher.states([quick], timeout=30)
        assert (await queue.get(quick)).state == "completed"
        for job_id in waiting:
            assert await state_of(pool, job_id) in ("queued", "running")  # still waiting on the provider
        assert {fake.prediction_of(f"wait-{i}").status for i in range(3)} == {"processing"}  # type: ignore[union-attr]

        for job_id in waiting:
            await queue.cancel(job_id)
        await watcher.states(waiting, timeout=30)
        assert {await state_of(pool, j) for j in waiting} == {"cancelled"}
        assert len(fake.cancels()) == 3


async def test_a_channel_runs_no_more_generations_than_its_limit(
    queue: Queue, pool: asyncpg.Pool, watcher: Watcher, spawn_worker: Any, media: Any, tmp_path: Path
) -> None:
    """With a limit of one per channel, a second job in the channel waits (creating no
    prediction) while the first is in flight, parked or not; another channel's goes on."""
    artifacts = tmp_path / "artifacts"
    with fake_provider(media) as fake:
        worker = spawn(spawn_worker, fake, artifacts, PGCUE_TEST_GENERATE_CHANNEL_LIMIT="1")
        (first,) = await queue.enqueue_many([job("first", channel="lim", outcome="never")])
        await worker.started()
        await asyncio.to_thread(fake.wait, lambda: fake.creates("first"))
        second, other = await queue.enqueue_many(
            [
                job("second", channel="lim", polls=1, outputs=["image.png"]),
                job("other", channel="free", polls=1, outputs=["image.png"]),
            ]
        )
        await watcher.states([other], timeout=30)
        assert (await queue.get(other)).state == "completed"
        # The second has been claimed and has waited, at least once, without a prediction.
        await watcher.until(
            "SELECT true FROM pgcue.jobs WHERE id = $1 AND progress_message LIKE 'waiting for a free place%'", second
        )
        assert fake.creates("second") == [] and await state_of(pool, second) in ("queued", "running")

        await queue.cancel(first)
        await watcher.states([first, second], timeout=30)
        assert (await queue.get(second)).state == "completed"
        (cancel,) = fake.cancels(fake.prediction_of("first").id)  # type: ignore[union-attr]
        (create,) = fake.creates("second")
        assert create.at > cancel.at  # its place came free only when the first ended


async def test_generate_is_a_paid_type_whose_payload_is_checked(api: Api, pool: asyncpg.Pool) -> None:
    body = {"type": "generate", "channelId": "c1", "payload": {"kind": "image", "model": "owner/model", "input": {}}}
    async with api.client("alice") as free:
        r = await free.post("/api/jobs", json={**body, "channelId": "a1"})
    assert r.status_code == 403 and r.json()["requiredPlan"] == "paid"
    async with api.client("carol") as paid:
        assert (await paid.post("/api/jobs", json=body)).status_code == 201
        for bad in (
            {"kind": "hologram", "model": "owner/model"},  # not a kind
            {"kind": "image", "model": "../../etc"},  # not <owner>/<name>
            {"kind": "image", "model": "owner/model", "apiToken": "r8_mine"},  # no key from a payload
        ):
            r = await paid.post("/api/jobs", json={**body, "payload": bad})
            assert r.status_code == 422, (bad, r.text)
    assert await pool.fetchval("SELECT count(*) FROM pgcue.jobs WHERE type = 'generate'") == 1
