"""resource-download is not an SSRF proxy, shown end to end: a real `pgcue worker` process
runs the jobs against real HTTP servers on loopback, which stand in for the internal network
a tenant must not reach (and for the public Internet when an operator allows them).

What a job of a tenant's URL may and may not do:
* every spelling of a loopback address, and a redirect to one from an allowed host, fails
  the job at its first attempt (permanent: no retry can fix it) with the one refusal text,
  and the loopback server never even sees a connection;
* an open and a closed internal port fail with the same text (no port scanning);
* credentials and query strings in the URL show up nowhere a tenant or an operator reads:
  the job's errorMessage, errors, result, progress and events, the worker's log;
* with PGCUE_FETCH_ALLOW_HOSTS=127.0.0.1 (how these tests simulate a public address) the
  same server is reached and the job completes.

No traffic leaves the machine: every URL names a loopback address, in some spelling.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from pgcue.core.models import Job, NewJob
from pgcue.workers.types.fetch import AddressNotAllowed
from tests.helpers.media_checks import job_files
from tests.helpers.typeservers import Route, send, serve

PNG = os.urandom(20_000)
NO_ALLOW_LIST = {"PGCUE_FETCH_ALLOW_HOSTS": ""}  # explicit: nothing internal is open
SECRETS = ("hunter2", "SECRET")


def routes() -> dict[str, Route]:
    return {
        "/a.png": lambda h: send(h, 200, PNG, "image/png"),
        "/x": lambda h: send(h, 200, PNG, "image/png"),
        "/busy": lambda h: send(h, 503, b"busy", "text/plain"),
    }


def redirect(location: str) -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(302)
        h.send_header("location", location)
        h.send_header("content-length", "0")
        h.end_headers()

    return route


def refused(host: str) -> str:
    """The job's errorMessage for a refused host, as the URL spells it."""
    return f"PermanentError: {AddressNotAllowed.message_for(host)}"


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def download(url: str) -> NewJob:
    return NewJob(type="resource-download", channel_id="c", payload={"urls": [url]})


def assert_refused_once(job: Job, host: str) -> None:
    """Failed at its first attempt, permanently, with the one refusal text, and no result."""
    assert job.state == "failed", (host, job.state, job.error_message)
    assert job.attempts == 1, (host, job.errors)
    assert job.error_message == refused(host), (host, job.error_message)
    assert [(e["attempt"], e["kind"], e["error"]) for e in job.errors] == [(1, "permanent", refused(host))], host
    assert job.result is None and job.result_path is None


async def run(queue: Any, watcher: Any, worker: Any, jobs: Sequence[NewJob]) -> list[Job]:
    ids = await queue.enqueue_many(jobs)
    await worker.started()
    await watcher.states(ids, timeout=40)
    return [await queue.get(i) for i in ids]


async def stopped(worker: Any) -> list[str]:
    """Stop the worker and return every line it wrote (after its last one, "worker stopped")."""
    worker.signal(signal.SIGTERM)
    assert await worker.wait_exit(30) == 0
    await asyncio.to_thread(worker.wait_log, "worker stopped", 10)
    return list(worker.raw)


async def test_every_spelling_of_a_loopback_server_is_refused_before_it_sees_a_connection(
    queue, watcher, spawn_worker, tmp_path: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    with contextlib.ExitStack() as stack:
        _, server = stack.enter_context(serve(routes()))
        port = server.server_address[1]
        # URL host -> the host as the refusal names it (httpx lower-cases names).
        spellings = {
            "127.0.0.1": "127.0.0.1",
            "localhost": "localhost",
            "LOCALHOST.": "localhost.",
            "127.1": "127.1",  # inet_aton: 127.0.0.1
            "2130706433": "2130706433",  # one 32-bit number
            "0x7f000001": "0x7f000001",  # hex
            "[::ffff:127.0.0.1]": "[::ffff:127.0.0.1]",  # IPv4-mapped: Linux connects to 127.0.0.1
            "0.0.0.0": "0.0.0.0",  # Linux connects to the local host
        }
        urls = {f"http://{spelling}:{port}/a.png": shown for spelling, shown in spellings.items()}
        servers = [server]
        if ipv6_loopback_available():
            base6, server6 = stack.enter_context(serve(routes(), host="::1"))
            urls[f"{base6}/a.png"] = "[::1]"
            servers.append(server6)
        worker = spawn_worker("resource-download", env={"PGCUE_ARTIFACTS_DIR": str(artifacts), **NO_ALLOW_LIST})
        jobs = await run(queue, watcher, worker, [download(u) for u in urls])
        seen = [(s.connections, s.requests) for s in servers]

    for (url, host), job in zip(urls.items(), jobs, strict=True):
        assert_refused_once(job, host)
        assert job_files(artifacts, job.id) == [], url
    # One text for all of them; only the host differs.
    texts = {str(job.error_message).replace(host, "HOST") for job, host in zip(jobs, urls.values(), strict=True)}
    assert texts == {refused("HOST")}
    assert seen == [(0, [])] * len(servers)  # not one connection, let alone a request


async def test_an_open_and_a_closed_internal_port_fail_with_the_same_text(queue, watcher, spawn_worker) -> None:
    with serve(routes()) as (base, server):
        closed = unused_port()
        worker = spawn_worker("resource-download", env=NO_ALLOW_LIST)
        open_job, closed_job = await run(
            queue, watcher, worker, [download(f"{base}/a.png"), download(f"http://127.0.0.1:{closed}/a.png")]
        )
        seen = (server.connections, server.requests)

    assert_refused_once(open_job, "127.0.0.1")
    assert_refused_once(closed_job, "127.0.0.1")
    assert open_job.error_message == closed_job.error_message
    assert [{k: e[k] for k in ("attempt", "kind", "error")} for e in open_job.errors] == [
        {k: e[k] for k in ("attempt", "kind", "error")} for e in closed_job.errors
    ]
    assert str(server.server_address[1]) not in str(open_job.error_message)
    assert str(closed) not in str(closed_job.error_message)
    assert seen == (0, [])


async def test_a_redirect_from_an_allowed_host_to_loopback_is_refused_at_the_hop(
    queue, watcher, spawn_worker, tmp_path: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    with serve(routes()) as (_, internal):
        port = internal.server_address[1]
        targets = {
            "/to-ip": (f"http://127.0.0.1:{port}/a.png", "127.0.0.1"),
            "/to-name": (f"http://localhost:{port}/a.png", "localhost"),
            "/to-number": (f"http://2130706433:{port}/a.png", "2130706433"),
            "/to-mapped": (f"http://[::ffff:127.0.0.1]:{port}/a.png", "[::ffff:127.0.0.1]"),
            "/to-any": (f"http://0.0.0.0:{port}/a.png", "0.0.0.0"),
        }
        redirects = {path: redirect(location) for path, (location, _) in targets.items()}
        # The redirector listens on 127.0.0.2 (all of 127/8 is loopback on Linux), and only
        # that address is allowed: the hop to 127.0.0.1 must be checked on its own.
        with serve({**routes(), **redirects}, host="127.0.0.2") as (public, redirector):
            worker = spawn_worker(
                "resource-download",
                env={"PGCUE_ARTIFACTS_DIR": str(artifacts), "PGCUE_FETCH_ALLOW_HOSTS": "127.0.0.2"},
            )
            jobs = await run(
                queue, watcher, worker, [download(f"{public}/a.png")] + [download(f"{public}{p}") for p in targets]
            )
            hops = sorted(path for _, path, _, _ in redirector.requests)
        seen = (internal.connections, internal.requests)

    direct, *redirected = jobs
    # The allowed host itself is reachable: what is refused below is the hop, not the first host.
    assert direct.state == "completed", direct.error_message
    assert direct.result_path is not None and (artifacts / direct.result_path).read_bytes() == PNG
    for (_, host), job in zip(targets.values(), redirected, strict=True):
        assert_refused_once(job, host)
        assert job_files(artifacts, job.id) == []
    assert hops == sorted(["/a.png", *targets])  # each redirect was served once, never retried
    assert seen == (0, [])


def secrets_in(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


async def leaked(watcher: Any, jobs: Sequence[Job]) -> dict[str, list[str]]:
    """Where a secret shows in what a tenant (the job, its events) can read about `jobs`."""
    found: dict[str, list[str]] = {}
    for job in jobs:
        events = await watcher.conn.fetch("SELECT data::text AS data FROM pgcue.job_events WHERE job_id = $1", job.id)
        places = {
            "errorMessage": job.error_message or "",
            "errors": json.dumps(job.errors),
            "result": json.dumps(job.result),
            "resultPath": job.result_path or "",
            "progressMessage": job.progress_message or "",
            "events": " ".join(r["data"] for r in events),
        }
        for place, text in places.items():
            if hits := secrets_in(text):
                found[f"{job.id} {place}"] = hits
    return found


async def test_a_refused_url_never_shows_its_credentials_or_query(queue, watcher, spawn_worker) -> None:
    with serve(routes()) as (_, server):
        port = server.server_address[1]
        worker = spawn_worker("resource-download", env={"PGCUE_LOG_LEVEL": "debug", **NO_ALLOW_LIST})
        (job,) = await run(queue, watcher, worker, [download(f"http://user:hunter2@127.0.0.1:{port}/x?token=SECRET")])
        log = await stopped(worker)
        seen = (server.connections, server.requests)

    assert_refused_once(job, "127.0.0.1")
    assert "hunter2" in json.dumps(job.payload) and "SECRET" in json.dumps(job.payload)  # they were there to leak
    assert await leaked(watcher, [job]) == {}
    assert any(str(job.id) in line for line in log)  # the log did talk about this job
    assert [line for line in log if secrets_in(line)] == []
    assert seen == (0, [])


async def test_an_allowed_loopback_server_is_reached_and_its_urls_secrets_never_show(
    queue, watcher, spawn_worker, tmp_path: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    with serve(routes()) as (base, server):
        port = server.server_address[1]
        creds = f"http://user:hunter2@127.0.0.1:{port}"
        cases = {
            "plain": f"{base}/a.png",
            "completed": f"{creds}/x?token=SECRET",
            "not found": f"{creds}/missing?token=SECRET#SECRET",
            "transient": f"{creds}/busy?token=SECRET",
            "closed port": f"http://user:hunter2@127.0.0.1:{unused_port()}/x?token=SECRET",
        }
        worker = spawn_worker(
            "resource-download",
            env={
                "PGCUE_ARTIFACTS_DIR": str(artifacts),
                "PGCUE_FETCH_ALLOW_HOSTS": "127.0.0.1",
                "PGCUE_LOG_LEVEL": "debug",
            },
        )
        jobs = dict(zip(cases, await run(queue, watcher, worker, [download(u) for u in cases.values()]), strict=True))
        log = await stopped(worker)
        requests = [(path, headers.get("authorization")) for _, path, headers, _ in server.requests]

    # Allowed, the same loopback server is reached and the download completes.
    plain = jobs["plain"]
    assert plain.state == "completed", plain.error_message
    assert plain.attempts == 1 and plain.result["files"][0]["url"] == f"{base}/a.png"
    assert plain.result_path is not None and (artifacts / plain.result_path).read_bytes() == PNG
    completed = jobs["completed"]
    assert completed.state == "completed", completed.error_message
    assert completed.result["files"][0]["url"] == f"http://127.0.0.1:{port}/x"
    # The server really got the secrets (the tenant meant them for it) ...
    assert ("/x?token=SECRET", "Basic dXNlcjpodW50ZXIy") in requests  # base64 of user:hunter2
    assert ("/a.png", None) in requests
    # ... and the failures name the URL without them.
    assert jobs["not found"].state == "failed" and jobs["not found"].attempts == 1
    assert jobs["not found"].error_message == f"PermanentError: http://127.0.0.1:{port}/missing: HTTP 404"
    transient = jobs["transient"]
    assert transient.state == "failed" and transient.attempts == 3 == len(transient.errors)  # retried, then given up
    assert all(f"http://127.0.0.1:{port}/busy: HTTP 503" in e["error"] for e in transient.errors), transient.errors
    down = jobs["closed port"]
    assert down.state == "failed" and down.attempts == 3, down.errors
    assert all("could not connect to http://127.0.0.1:" in e["error"] for e in down.errors), down.errors
    assert await leaked(watcher, list(jobs.values())) == {}
    assert any("attempt failed" in line for line in log)  # the retried failures were logged ...
    assert [line for line in log if secrets_in(line)] == []  # ... without the secrets
