"""A fake Replicate-compatible predictions provider on loopback, for the `generate` tests:
a real HTTP server (threaded http.server) that makes, reports and cancels predictions by a
script each job carries in its input, and serves their output files itself.

    POST /v1/models/{owner}/{name}/predictions, POST /v1/predictions   create
    GET  /v1/predictions/{id}                                          get
    POST /v1/predictions/{id}/cancel                                   cancel
    GET  /files/{name}                                                 an output file

The script is the input's "fake" object:

    polls      GETs that answer `processing` before the outcome (default 2)
    outcome    succeeded | failed | canceled | never (processing until cancelled)
    outputs    names of files the prediction succeeds with (served under /files/)
    error      a failed prediction's message
    failFirst  this many of the job's predictions fail with `error`, later ones follow `outcome`
    createErrors, pollErrors   [[status, body, headers], ...]: the first creates / GETs of
               the job answer these instead ("always": true repeats the first one)
    gateAt     the GET with this number (1 = the first) waits until release() (or 20 s)

Every request is recorded, with its time, so a test can count creates per idempotency
key, see which prediction each GET asked for, and wait (bounded) for a call to arrive.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "r8_test-token-7Q2"


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float
    status: int = 0
    prediction: str | None = None


@dataclass
class Prediction:
    id: str
    key: str
    script: dict[str, Any]
    version: str | None
    model: str | None
    status: str = "starting"
    polls: int = 0
    logs: str = ""
    output: Any = None
    error: str | None = None
    gets: int = 0


@dataclass
class FakeProvider:
    base: str = ""
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # name -> (bytes, content type)
    calls: list[Call] = field(default_factory=list)
    predictions: dict[str, Prediction] = field(default_factory=dict)
    by_key: dict[str, str] = field(default_factory=dict)
    failed_first: dict[str, int] = field(default_factory=dict)  # per job marker: predictions failed so far
    errors_used: dict[tuple[str, str], int] = field(default_factory=dict)  # (marker, create|poll) -> used
    cond: threading.Condition = field(default_factory=threading.Condition)
    gate: threading.Event = field(default_factory=threading.Event)
    gated: list[str] = field(default_factory=list)  # predictions whose GET waits at the gate

    @property
    def base_url(self) -> str:
        return f"{self.base}/v1"

    def url(self, name: str) -> str:
        return f"{self.base}/files/{name}"

    # --- what the tests read --------------------------------------------------------------

    def creates(self, marker: str | None = None) -> list[Call]:
        with self.cond:
            return [
                c
                for c in self.calls
                if c.method == "POST" and c.path.endswith("/predictions") and (marker is None or _marker(c) == marker)
            ]

    def gets(self, prediction_id: str) -> list[Call]:
        with self.cond:
            return [c for c in self.calls if c.method == "GET" and c.path == f"/v1/predictions/{prediction_id}"]

    def cancels(self, prediction_id: str | None = None) -> list[Call]:
        with self.cond:
            return [
                c
                for c in self.calls
                if c.path.endswith("/cancel") and (prediction_id is None or c.prediction == prediction_id)
            ]

    def prediction_of(self, marker: str) -> Prediction | None:
        with self.cond:
            found = [p for p in self.predictions.values() if p.script.get("marker") == marker]
            return found[-1] if found else None

    def wait(self, predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
        """Block (bounded) until `predicate()` is truthy; woken by every request."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the fake provider did not see it within {timeout}s")
                self.cond.wait(min(left, 0.5))

    def release(self) -> None:
        self.gate.set()

    # --- the API ---------------------------------------------------------------------------

    def handle(self, h: _Handler, method: str, path: str, body: Any) -> None:
        call = Call(method, path, {k.lower(): v for k, v in h.headers.items()}, body, time.monotonic())
        with self.cond:
            self.calls.append(call)
            self.cond.notify_all()
        try:
            if path.startswith("/files/"):
                self._file(h, call, path.removeprefix("/files/"))
            elif call.headers.get("authorization") != f"Bearer {TOKEN}":
                self._send(h, call, 401, {"title": "Unauthenticated", "detail": "Invalid token.", "status": 401})
            elif method == "POST" and path.endswith("/predictions"):
                self._create(h, call, body)
            elif method == "POST" and path.startswith("/v1/predictions/") and path.endswith("/cancel"):
                self._cancel(h, call, path.split("/")[3])
            elif method == "GET" and path.startswith("/v1/predictions/"):
                self._get(h, call, path.split("/")[3])
            else:
                self._send(h, call, 404, {"detail": "Not found."})
        finally:
            with self.cond:
                self.cond.notify_all()

    def _scripted_error(self, h: _Handler, call: Call, script: dict[str, Any], which: str) -> bool:
        errors = script.get("createErrors" if which == "create" else "pollErrors") or []
        if not errors:
            return False
        slot = (str(script.get("marker")), which)
        with self.cond:
            used = self.errors_used.get(slot, 0)
            if used >= len(errors) and not script.get("always"):
                return False
            self.errors_used[slot] = used + 1
        status, answer, headers = errors[min(used, len(errors) - 1)]
        self._send(h, call, status, answer, headers)
        return True

    def _create(self, h: _Handler, call: Call, body: Any) -> None:
        input = (body or {}).get("input") or {}
        script = dict(input.get("fake") or {})
        if self._scripted_error(h, call, script, "create"):
            return
        key = call.headers.get("idempotency-key", "")
        with self.cond:
            known = self.by_key.get(key) if key else None
            if known is None:
                pid = "p" + uuid.uuid4().hex[:20]
                parts = call.path.split("/")
                model = "/".join(parts[3:5]) if parts[2] == "models" else None
                self.predictions[pid] = Prediction(pid, key, script, (body or {}).get("version"), model)
                if key:
                    self.by_key[key] = pid
                known = pid
            prediction = self.predictions[known]
        call.prediction = known
        self._send(h, call, 201, self._shown(prediction))

    def _get(self, h: _Handler, call: Call, pid: str) -> None:
        call.prediction = pid
        with self.cond:
            prediction = self.predictions.get(pid)
        if prediction is None:
            self._send(h, call, 404, {"detail": "Not found."})
            return
        if self._scripted_error(h, call, prediction.script, "poll"):
            return
        with self.cond:
            prediction.gets += 1
            number = prediction.gets
        if prediction.script.get("gateAt") == number:
            with self.cond:
                self.gated.append(pid)
                self.cond.notify_all()
            self.gate.wait(20)
        with self.cond:
            self._advance(prediction)
            shown = self._shown(prediction)
        self._send(h, call, 200, shown)

    def _cancel(self, h: _Handler, call: Call, pid: str) -> None:
        call.prediction = pid
        with self.cond:
            prediction = self.predictions.get(pid)
            if prediction is not None and prediction.status in ("starting", "processing"):
                prediction.status = "canceled"
            shown = None if prediction is None else self._shown(prediction)
        if shown is None:
            self._send(h, call, 404, {"detail": "Not found."})
        else:
            self._send(h, call, 200, shown)

    def _advance(self, p: Prediction) -> None:
        """One GET's worth of progress (called holding the lock)."""
        if p.status not in ("starting", "processing"):
            return
        script = p.script
        polls = int(script.get("polls", 2))
        p.polls += 1
        if p.polls <= polls or script.get("outcome") == "never":
            p.status = "processing"
            percent = min(99, int(100 * p.polls / (polls + 1)))
            p.logs += f"step {p.polls}/{polls + 1} {percent}%|{'#' * (percent // 10)}\n"
            return
        marker = str(script.get("marker"))
        if self.failed_first.get(marker, 0) < int(script.get("failFirst", 0)):
            self.failed_first[marker] = self.failed_first.get(marker, 0) + 1
            p.status, p.error = "failed", script.get("error", "failed")
            return
        outcome = script.get("outcome", "succeeded")
        if outcome == "succeeded":
            names = script.get("outputs") or []
            urls = [n if n.startswith("http") else self.url(n) for n in names]
            p.output = urls[0] if len(urls) == 1 else urls
            p.logs += "done 100%\n"
        elif outcome == "failed":
            p.error = script.get("error", "failed")
        p.status = outcome

    def _shown(self, p: Prediction) -> dict[str, Any]:
        return {
            "id": p.id,
            "model": p.model,
            "version": p.version,
            "status": p.status,
            "logs": p.logs,
            "output": p.output,
            "error": p.error,
            "metrics": {"predict_time": 0.5} if p.status == "succeeded" else {},
            "urls": {
                "get": f"{self.base_url}/predictions/{p.id}",
                "cancel": f"{self.base_url}/predictions/{p.id}/cancel",
            },
        }

    def _file(self, h: _Handler, call: Call, name: str) -> None:
        found = self.files.get(name)
        if found is None:
            self._raw(h, call, 404, b"not found", "text/plain")
        else:
            self._raw(h, call, 200, found[0], found[1])

    def _send(self, h: _Handler, call: Call, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._raw(h, call, status, json.dumps(body).encode(), "application/json", headers)

    def _raw(
        self, h: _Handler, call: Call, status: int, data: bytes, ctype: str, headers: dict[str, str] | None = None
    ) -> None:
        call.status = status
        try:
            h.send_response(status)
            h.send_header("content-type", ctype)
            h.send_header("content-length", str(len(data)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the worker went away (killed, or it stopped waiting on a cancel)


def _marker(call: Call) -> str | None:
    body = call.body if isinstance(call.body, dict) else {}
    return ((body.get("input") or {}).get("fake") or {}).get("marker")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeProvider


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _dispatch(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.server.fake.handle(self, self.command, self.path.split("?")[0], body)

    do_GET = _dispatch
    do_POST = _dispatch


@contextmanager
def fake_provider(files: dict[str, tuple[bytes, str]]) -> Iterator[FakeProvider]:
    """A FakeProvider serving on 127.0.0.1 for the block (its gate opened at the end, so no
    request thread is left waiting)."""
    fake = FakeProvider(files=dict(files))
    server = _Server(("127.0.0.1", 0), _Handler)
    server.fake = fake
    fake.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.release()
        server.shutdown()
        server.server_close()
