"""A slow server cannot hold a resource-download worker: shown with a real worker process and
HTTP servers on loopback that trickle one byte every 2 s or go silent.

* A cancel stops a running download at once (the fetch runs under ctx.cancellable), whatever
  the server does: the job ends `cancelled` in seconds, not at its 30-minute timeout, the
  socket is closed, no partial file is left, and the worker's only slot is free again.
* PGCUE_FETCH_MIN_RATE / PGCUE_FETCH_RATE_WINDOW: a trickle fails its attempt with "sent less
  than" after one window (a transient error: the job is retried) instead of hanging.
* PGCUE_FETCH_TOTAL_TIMEOUT: a server that sends its headers and then nothing, or nothing at
  all, fails the attempt at the total time limit.

The servers are loopback servers allowed with PGCUE_FETCH_ALLOW_HOSTS (these tests are not
about SSRF; tests/processes/test_ssrf.py is). Every wait is bounded; the servers' pauses are
their pace, never synchronisation.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from pgcue.core.models import Job, NewJob
from tests.helpers.media_checks import job_files
from tests.helpers.typeservers import send, serve

LOCAL_SERVER_ALLOWED = {"PGCUE_FETCH_ALLOW_HOSTS": "127.0.0.1"}
PNG = os.urandom(50_000)
TYPE_TIMEOUT = 30 * 60  # resource-download's timeout: what a cancel must not wait for


class Slow:
    """A route that sends a head (unless `head` is False), then one body byte every `every`
    seconds (never, if `every` is None), until the client closes the connection, which it
    notices at once and counts in `closes`."""

    def __init__(self, *, every: float | None, head: bool = True, length: int = 1000) -> None:
        self.every = every
        self.head = head
        self.length = length
        self.bytes_sent = 0
        self.closes = 0
        self.stop = threading.Event()  # set when the test ends: no thread outlives it
        self._cond = threading.Condition()

    def __call__(self, h: BaseHTTPRequestHandler) -> None:
        h.close_connection = True
        try:
            if self.head:
                h.send_response(200)
                h.send_header("content-type", "application/octet-stream")
                h.send_header("content-length", str(self.length))
                h.end_headers()
            for _ in range(self.length):
                if self.every is not None:
                    h.wfile.write(b"x")
                    self.bytes_sent += 1
                if self._peer_closed(h.connection, self.every):
                    break
        except OSError:
            pass  # reset by the client: closed as well
        with self._cond:
            self.closes += 1
            self._cond.notify_all()

    def _peer_closed(self, sock: socket.socket, every: float | None) -> bool:
        deadline = time.monotonic() + (every if every is not None else 60.0)
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            readable, _, _ = select.select([sock], [], [], min(left, 0.2))
            if readable:
                try:
                    return sock.recv(1) == b""
                except OSError:
                    return True
        return True

    def wait_closes(self, n: int, timeout: float) -> int:
        """Block until the client has closed `n` connections; bounded. Returns the count."""
        with self._cond:
            self._cond.wait_for(lambda: self.closes >= n, timeout)
            return self.closes


@contextlib.contextmanager
def slow_server(**routes: Slow) -> Iterator[tuple[str, Any]]:
    """serve() with /<name>.bin for each Slow route and /fast.png; stops the slow routes after."""
    table: dict[str, Any] = {f"/{name}.bin": route for name, route in routes.items()}
    table["/fast.png"] = lambda h: send(h, 200, PNG, "image/png")
    try:
        with serve(table) as served:
            yield served
    finally:
        for route in routes.values():
            route.stop.set()


def download(url: str, **fields: Any) -> NewJob:
    return NewJob(type="resource-download", channel_id="c", payload={"urls": [url]}, **fields)


async def get_all(queue: Any, ids: Sequence[Any]) -> list[Job]:
    return [await queue.get(i) for i in ids]


def attempt_seconds(job: Job) -> float:
    """The last attempt's run time, claim to end, by the database's clock."""
    assert job.duration_ms is not None, job
    return job.duration_ms / 1000


async def test_a_cancel_stops_a_trickling_download_at_once_and_frees_the_workers_slot(
    queue, watcher, spawn_worker, tmp_path: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    trickle = Slow(every=2.0)  # 1,000 bytes at one per 2 s: half an hour of download
    with slow_server(trickle=trickle) as (base, _server):
        worker = spawn_worker(
            "resource-download",
            extra=["--concurrency", "1"],
            # No rate rule and a total limit far away: only the cancel can end this download.
            env={
                "PGCUE_ARTIFACTS_DIR": str(artifacts),
                "PGCUE_FETCH_MIN_RATE": "0",
                "PGCUE_FETCH_TOTAL_TIMEOUT": "3600",
                **LOCAL_SERVER_ALLOWED,
            },
        )
        (slow_id,) = await queue.enqueue_many([download(f"{base}/trickle.bin")])
        await worker.started()
        # Inside the body: the first byte's progress report is in the job's row.
        await watcher.until(
            "SELECT state = 'running' AND progress_message IS NOT NULL FROM pgcue.jobs WHERE id = $1",
            slow_id,
            timeout=30,
        )
        started = time.monotonic()
        await queue.cancel(slow_id)
        await watcher.states([slow_id], {"cancelled"}, timeout=30)
        elapsed = time.monotonic() - started
        closes = await asyncio.to_thread(trickle.wait_closes, 1, 20)
        sent = trickle.bytes_sent

        # The worker has one slot; a download that is still running (or a slot not given back)
        # would keep this one queued.
        (fast_id,) = await queue.enqueue_many([download(f"{base}/fast.png")])
        await watcher.states([fast_id], timeout=30)
        slow, fast = await get_all(queue, [slow_id, fast_id])

    assert slow.state == "cancelled", (slow.state, slow.error_message)
    assert elapsed < 5, f"cancelled after {elapsed:.1f} s (the type's timeout is {TYPE_TIMEOUT} s)"
    assert slow.attempts == 1 and slow.result is None
    assert closes == 1 and sent < 10  # the worker closed the socket: the trickle was not read to its end
    assert job_files(artifacts, slow.id) == []  # no partial file
    assert fast.state == "completed", fast.error_message
    assert fast.result_path is not None and (artifacts / fast.result_path).read_bytes() == PNG


async def test_a_download_slower_than_the_minimum_rate_fails_its_attempt_and_is_retried(
    queue, watcher, spawn_worker, tmp_path: Path
) -> None:
    trickle = Slow(every=2.0)
    with slow_server(trickle=trickle) as (base, _server):
        worker = spawn_worker(
            "resource-download",
            env={
                "PGCUE_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
                "PGCUE_FETCH_MIN_RATE": "1000",
                "PGCUE_FETCH_RATE_WINDOW": "1",
                **LOCAL_SERVER_ALLOWED,
            },
        )
        (job_id,) = await queue.enqueue_many([download(f"{base}/trickle.bin", max_attempts=2)])
        await worker.started()
        await watcher.states([job_id], timeout=40)
        closes = await asyncio.to_thread(trickle.wait_closes, 2, 20)
        (job,) = await get_all(queue, [job_id])

    slow = f"{base}/trickle.bin sent less than 1000 bytes/s over 1 s (transient)"
    assert job.state == "failed", (job.state, job.errors)
    # Transient: the first attempt's failure put the job back in the queue, and it ran again.
    assert job.attempts == 2 and [(e["attempt"], e["kind"]) for e in job.errors] == [(1, "error"), (2, "error")]
    assert job.errors[0]["error"] == f"RuntimeError: {slow}", job.errors[0]
    assert job.error_message == f"RuntimeError: {slow}"
    # After one window of 1 s, not at the trickle's end (some 2,000 s) nor at a read timeout.
    assert 0.9 <= attempt_seconds(job) < 6, attempt_seconds(job)
    assert closes == 2  # each attempt closed its connection


async def test_a_server_that_goes_silent_fails_the_attempt_at_the_total_time_limit(
    queue, watcher, spawn_worker, tmp_path: Path
) -> None:
    after_head = Slow(every=None)  # headers, then nothing
    mute = Slow(every=None, head=False)  # not even a status line
    with slow_server(after_head=after_head, mute=mute) as (base, _server):
        worker = spawn_worker(
            "resource-download",
            # No rate rule: only the total time limit ends these downloads (httpx's read
            # timeout, 30 s, is far away).
            env={
                "PGCUE_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
                "PGCUE_FETCH_TOTAL_TIMEOUT": "2",
                "PGCUE_FETCH_MIN_RATE": "0",
                **LOCAL_SERVER_ALLOWED,
            },
        )
        ids = await queue.enqueue_many(
            [download(f"{base}/after_head.bin", max_attempts=1), download(f"{base}/mute.bin", max_attempts=1)]
        )
        await worker.started()
        await watcher.states(ids, timeout=30)
        closes = [await asyncio.to_thread(s.wait_closes, 1, 20) for s in (after_head, mute)]
        jobs = await get_all(queue, ids)

    for job, path in zip(jobs, ("after_head.bin", "mute.bin"), strict=True):
        assert job.state == "failed", (path, job.state, job.errors)
        expected = f"RuntimeError: {base}/{path} exceeded the total time limit of 2 s (transient)"
        assert [(e["kind"], e["error"]) for e in job.errors] == [("error", expected)], (path, job.errors)
        assert 1.9 <= attempt_seconds(job) < 6, (path, attempt_seconds(job))
    assert closes == [1, 1]
