"""resource-download through a real worker process, from an HTTP server on loopback: files
match their checksums; transient errors are retried; anything else fails at once with a
clear error and leaves no file."""

from __future__ import annotations

import hashlib
import os
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from pgcue.core.models import NewJob
from tests.helpers.media_checks import job_files
from tests.helpers.typeservers import send, serve

# The test servers listen on loopback, which a download may reach only when an operator
# allows it (tests/processes/test_ssrf.py proves it is refused otherwise).
LOCAL_SERVER_ALLOWED = {"PGCUE_FETCH_ALLOW_HOSTS": "127.0.0.1"}

PNG = os.urandom(300_000)
WAV = os.urandom(120_000)
BIG = 2 * 1024 * 1024
LIMIT = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def streamed_big(h: BaseHTTPRequestHandler) -> None:
    """No Content-Length: the size is only known by counting."""
    h.send_response(200)
    h.send_header("content-type", "application/octet-stream")
    h.send_header("connection", "close")
    h.end_headers()
    try:
        for _ in range(BIG // 65536):
            h.wfile.write(b"\0" * 65536)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the worker stopped reading at its limit
    h.close_connection = True


def routes() -> dict:
    calls = {"flaky": 0}

    def flaky(h: BaseHTTPRequestHandler) -> None:
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            send(h, 503, b"busy", "text/plain")
        else:
            send(h, 200, PNG, "image/png")

    return {
        "/media/a.png": lambda h: send(h, 200, PNG, "image/png"),
        "/media/voice.wav": lambda h: send(h, 200, WAV, "audio/wav; charset=binary"),
        "/flaky.png": flaky,
        "/big.bin": lambda h: send(h, 200, b"", "application/octet-stream", length=BIG),
        "/stream.bin": streamed_big,
        "/page.html": lambda h: send(h, 200, b"<html></html>", "text/html; charset=utf-8"),
    }


async def test_downloads_match_their_checksums(queue, watcher, spawn_worker, tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    with serve(routes()) as (base, _server):
        worker = spawn_worker("resource-download", env={"PGCUE_ARTIFACTS_DIR": str(artifacts), **LOCAL_SERVER_ALLOWED})
        payload = {
            "resources": [{"url": f"{base}/media/voice.wav", "sha256": sha(WAV), "name": "narration.wav"}],
            "urls": [f"{base}/media/a.png"],
        }
        ids = await queue.enqueue_many(
            [
                NewJob(type="resource-download", channel_id="c", payload=payload),
                NewJob(type="resource-download", channel_id="c", payload={"urls": [f"{base}/flaky.png"]}),
            ]
        )
        await worker.started()
        await watcher.states(ids, timeout=30)
        job, flaky = [await queue.get(i) for i in ids]

    assert job.state == "completed", job.error_message
    files = {f["name"]: f for f in job.result["files"]}
    assert set(files) == {"narration.wav", "a.png"}
    assert files["narration.wav"]["verified"] is True  # a given checksum is verified
    assert files["a.png"]["verified"] is False and files["a.png"]["sha256"] == sha(PNG)  # else computed, reported
    assert files["narration.wav"]["contentType"] == "audio/wav"
    assert (artifacts / str(job.id) / "narration.wav").read_bytes() == WAV
    assert sha((artifacts / str(job.id) / "a.png").read_bytes()) == sha(PNG)
    assert job.result_path == f"{job.id}/narration.wav"
    assert job_files(artifacts, job.id) == ["a.png", "narration.wav"]

    # A 503 is transient: the job is retried and the second attempt downloads the file.
    assert flaky.state == "completed", flaky.error_message
    assert flaky.attempts == 2 and "HTTP 503" in flaky.errors[0]["error"]
    assert (artifacts / flaky.result_path).read_bytes() == PNG


async def test_oversized_or_disallowed_download_fails_at_once_and_leaves_no_file(
    queue, watcher, spawn_worker, tmp_path: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    with serve(routes()) as (base, _server):
        worker = spawn_worker("resource-download", env={"PGCUE_ARTIFACTS_DIR": str(artifacts), **LOCAL_SERVER_ALLOWED})
        cases = {
            "declared too big": {"urls": [f"{base}/big.bin"], "maxBytes": LIMIT},
            "streamed too big": {"urls": [f"{base}/stream.bin"], "maxBytes": LIMIT},
            "disallowed type": {"urls": [f"{base}/page.html"]},
            "narrowed allow-list": {"urls": [f"{base}/media/voice.wav"], "allow": ["image/*"]},
            "not found": {"urls": [f"{base}/nothing-here"]},
            "checksum mismatch": {"resources": [{"url": f"{base}/media/a.png", "sha256": "0" * 64}]},
            # The first file completes, the second is too big: the job leaves nothing behind.
            "second too big": {"urls": [f"{base}/media/a.png", f"{base}/big.bin"], "maxBytes": LIMIT},
        }
        ids = await queue.enqueue_many(
            [NewJob(type="resource-download", channel_id="c", payload=p) for p in cases.values()]
        )
        await worker.started()
        await watcher.states(ids, timeout=30)
        jobs = dict(zip(cases, [await queue.get(i) for i in ids], strict=True))

    expected = {
        "declared too big": f"announces {BIG} bytes, over the limit of {LIMIT}",
        "streamed too big": f"more than the limit of {LIMIT} bytes",
        "disallowed type": "content type text/html is not allowed",
        "narrowed allow-list": "content type audio/wav is not allowed",
        "not found": "HTTP 404",
        "checksum mismatch": "expected " + "0" * 64,
        "second too big": "over the limit",
    }
    for case, job in jobs.items():
        assert job.state == "failed", (case, job.state, job.error_message)
        assert job.attempts == 1, case  # no retry can fix these
        assert expected[case] in job.error_message, (case, job.error_message)
        assert job_files(artifacts, job.id) == [], (case, job_files(artifacts, job.id))
