"""render through a real worker process: the MP4 probes with the requested resolution and
duration; a cancelled render kills ffmpeg and leaves no MP4."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

from pgcue.core.models import NewJob
from tests.helpers.media_checks import ffprobe, job_files


def make_inputs(artifacts: Path, source: uuid.UUID) -> tuple[str, str]:
    """An image and a short tone, stored as the artifacts of an earlier job `source` (of
    the render's channel: a render reads its own channel's artifacts only); their keys."""
    folder = artifacts / str(source)
    folder.mkdir(parents=True)
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=s=200x200:d=1",
            "-frames:v",
            "1",
            str(folder / "still.png"),
        ],
        check=True,
        timeout=30,
    )
    subprocess.run(["sox", "-n", "-r", "22050", str(folder / "tone.wav"), "synth", "0.7", "sine", "440"], check=True)
    return f"{source}/still.png", f"{source}/tone.wav"


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


async def test_render_composition_probes_with_requested_size_and_duration(
    queue, watcher, spawn_worker, tmp_path: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    (source,) = await queue.enqueue_many([NewJob(type="echo", channel_id="c")])
    image, audio = make_inputs(artifacts, source)
    worker = spawn_worker("render", env={"PGCUE_ARTIFACTS_DIR": str(artifacts)})
    composition = {
        "width": 320,
        "height": 180,
        "fps": 25,
        "scenes": [
            {"color": "#1d3557", "duration": 0.8, "caption": 'Episode 12: it\'s "live": 100% {done}'},
            {"image": image, "duration": 1.2},
        ],
        "audio": audio,
        "captions": [{"text": "narration", "start": 0.9, "end": 1.9}],
    }
    ids = await queue.enqueue_many(
        [
            NewJob(type="render", channel_id="c", payload=composition),
            NewJob(type="render", channel_id="c", payload={"scenes": [{"image": "../../etc/passwd", "duration": 1}]}),
        ]
    )
    await worker.started()
    await watcher.states(ids, timeout=40)
    job, outside = [await queue.get(i) for i in ids]
    assert job.state == "completed", job.error_message
    assert job.result_path == f"{job.id}/render.mp4"
    info = ffprobe(artifacts / job.result_path)
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    assert (video["width"], video["height"]) == (320, 180)
    assert video["codec_name"] == "h264"
    assert abs(float(info["format"]["duration"]) - 2.0) < 0.15
    assert any(s["codec_type"] == "audio" for s in info["streams"])  # the tone, padded to the video
    assert job.result["width"] == 320 and job.result["height"] == 180
    assert abs(job.result["duration"] - 2.0) < 0.15
    assert job.result["size"] == (artifacts / job.result_path).stat().st_size
    assert job_files(artifacts, job.id) == ["render.mp4"]

    # Inputs come only from the artifacts store.
    assert outside.state == "failed" and outside.attempts == 1
    assert "no artifact" in outside.error_message


async def test_cancelled_render_kills_ffmpeg_and_leaves_no_mp4(queue, watcher, spawn_worker, tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    worker = spawn_worker("render", env={"PGCUE_ARTIFACTS_DIR": str(artifacts)})
    long = {"width": 1280, "height": 720, "scenes": [{"color": "navy", "duration": 600, "caption": "long"}]}
    (job_id,) = await queue.enqueue_many([NewJob(type="render", channel_id="c", payload=long)])
    await worker.started()
    # Mid-way: ffmpeg has reported encoding progress, and is still running.
    await watcher.until(
        "SELECT progress BETWEEN 1 AND 50 FROM pgcue.jobs WHERE id = $1 AND state = 'running'", job_id, timeout=30
    )
    assert children(worker.proc.pid), "ffmpeg should be running"
    assert any(
        name.endswith(tuple("0123456789abcdef")) and ".render.mp4.part-" in name
        for name in job_files(artifacts, job_id)
    )

    await queue.cancel(job_id)
    await watcher.states([job_id], {"cancelled"}, timeout=15)
    job = await queue.get(job_id)
    assert job.state == "cancelled"
    assert not [f for f in job_files(artifacts, job_id) if "mp4" in f]  # neither the MP4 nor its partial
    assert children(worker.proc.pid) == []  # ffmpeg was killed, not left running
