"""tts through a real worker process: the audio file itself is checked, and a worker killed
mid-job leaves a retry that produces one complete file."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from pgcue.core.errors import InvalidJob
from pgcue.core.models import NewJob
from tests.helpers.media_checks import job_files, pcm_stats

TEXT = (
    "Welcome to the studio. Today we look at how a queue in PostgreSQL hands work to many workers. "
    "Each job is claimed once, and its progress is streamed to the browser as it happens!"
)


async def test_tts_renders_segments_into_one_audible_file(queue, watcher, spawn_worker, tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    worker = spawn_worker("tts", env={"PGCUE_ARTIFACTS_DIR": str(artifacts)})
    ids = await queue.enqueue_many(
        [
            NewJob(type="tts", channel_id="c", payload={"text": TEXT, "voice": "en", "speed": 180, "segmentChars": 80}),
            NewJob(type="tts", channel_id="c", payload={"text": "Short and sweet.", "format": "mp3", "speed": 150}),
            NewJob(type="tts", channel_id="c", payload={"text": "hello", "voice": "xx-missing"}),
        ]
    )
    # A payload the type's schema refuses is never enqueued: the error names the field.
    with pytest.raises(InvalidJob, match=r"payload\.text is required") as refused:
        await queue.enqueue_many([NewJob(type="tts", channel_id="c", payload={"voice": "en"})])
    assert refused.value.field == "payload.text"
    await worker.started()
    await watcher.states(ids, timeout=40)
    wav, mp3, bad_voice = [await queue.get(i) for i in ids]

    assert wav.state == "completed", wav.error_message
    assert wav.result_path == f"{wav.id}/speech.wav"
    assert wav.result["segments"] >= 3  # 80-character segments: rendered in turn, then merged
    path = artifacts / wav.result_path
    duration, rms = pcm_stats(path)
    assert 6 < duration < 25, duration  # ~35 words at 180 wpm, plus pauses
    assert rms > 0.02, f"silent audio (rms {rms})"
    assert abs(wav.result["duration"] - duration) < 0.1
    assert wav.result["size"] == path.stat().st_size
    assert job_files(artifacts, wav.id) == ["speech.wav"]  # segments and temporary names gone

    assert mp3.state == "completed", mp3.error_message
    duration, rms = pcm_stats(artifacts / mp3.result_path)
    assert mp3.result_path.endswith("/speech.mp3") and mp3.result["contentType"] == "audio/mpeg"
    assert 0.5 < duration < 5 and rms > 0.02

    # Input no retry can fix fails at once, with a message that says what to change.
    assert bad_voice.state == "failed" and bad_voice.attempts == 1
    assert "no voice 'xx-missing'" in bad_voice.error_message


async def test_tts_killed_mid_job_is_retried_into_one_complete_file(
    queue, watcher, spawn_worker, tmp_path: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    env = {"PGCUE_ARTIFACTS_DIR": str(artifacts)}
    sentences = [f"This is sentence number {n} of the long narration." for n in range(1, 61)]
    payload = {"text": " ".join(sentences), "speed": 300, "segmentChars": 60}
    first = spawn_worker("tts", extra=["--import", "tests.helpers.typeoverrides"], env=env)
    (job_id,) = await queue.enqueue_many([NewJob(type="tts", channel_id="c", payload=payload)])
    await first.started()
    # Mid-way: some segments rendered, the merge not reached.
    await watcher.until(
        "SELECT progress BETWEEN 5 AND 60 FROM pgcue.jobs WHERE id = $1 AND state = 'running'", job_id, timeout=30
    )
    first.signal(signal.SIGKILL)
    await first.wait_exit(10)

    second = spawn_worker("tts", extra=["--import", "tests.helpers.typeoverrides"], env=env)
    await second.started()
    await watcher.states([job_id], timeout=40)
    job = await queue.get(job_id)
    assert job.state == "completed", job.error_message
    assert job.attempts == 2  # the killed attempt, then the one that finished
    assert job.result["segments"] == 60
    assert job.result["segmentsReused"] > 0  # segments the killed attempt completed were kept
    assert job_files(artifacts, job_id) == ["speech.wav"]  # one file: no partials, no segments
    duration, rms = pcm_stats(artifacts / job.result_path)
    assert 30 < duration < 150, duration  # 60 sentences × 9 words at 300 wpm, with pauses
    assert rms > 0.02
