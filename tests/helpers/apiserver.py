"""The real API served by uvicorn on a loopback port, in the test's event loop, plus keys
and an SSE reader. Import the fixtures into a test module to use them."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
import uvicorn

from pgcue.api.app import create_app
from pgcue.core.config import Settings
from pgcue.core.queue import Queue


@dataclass
class Api:
    url: str
    app: Any
    keys: dict[str, str] = field(default_factory=dict)

    def client(self, who: str | None = None, **kw: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.keys[who]}"} if who else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=httpx.Timeout(20.0), **kw)

    @property
    def hub(self) -> Any:
        return self.app.state.hub


async def serve(settings: Settings) -> AsyncIterator[Api]:
    app = create_app(settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2, lifespan="on")
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 10
    while not server.started:  # uvicorn offers a flag, not an event; bounded
        if task.done() or time.monotonic() > deadline:
            raise AssertionError("API server did not start")
        await asyncio.sleep(0.01)
    try:
        yield Api(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


@pytest.fixture
async def api(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Api]:
    """The API with keys: alice (free, channel a1), bob (free, b1), carol (paid, c1), admin."""
    async for running in serve(settings.replace(sse_keepalive=0.5)):
        keys = Queue(pool, settings.schema).keys
        running.keys["alice"] = await keys.create("alice", plan="free", channels=["a1", "a2"])
        running.keys["bob"] = await keys.create("bob", plan="free", channels=["b1"])
        running.keys["carol"] = await keys.create("carol", plan="paid", channels=["c1"])
        running.keys["admin"] = await keys.create("ops", admin=True)
        yield running


@dataclass
class Sse:
    id: str | None
    event: str | None
    data: dict[str, Any] | None


class SseReader:
    """Reads an open text/event-stream response frame by frame; every read is bounded."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()
        self.comments: list[str] = []
        self.ended = False

    async def next(self, timeout: float = 20.0) -> Sse | None:
        """The next event (None when the stream ended)."""
        fields: dict[str, str] = {}
        async with asyncio.timeout(timeout):
            while True:
                try:
                    line = await anext(self.lines)
                except StopAsyncIteration:
                    self.ended = True
                    return None
                if line == "":
                    if "event" in fields or "data" in fields:
                        data = msgspec.json.decode(fields["data"]) if "data" in fields else None
                        return Sse(fields.get("id"), fields.get("event"), data)
                    fields = {}
                    continue
                if line.startswith(":"):
                    self.comments.append(line)
                    continue
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value

    async def until(self, pred: Any, timeout: float = 20.0) -> list[Sse]:
        """Events up to and including the first that satisfies `pred`."""
        out: list[Sse] = []
        async with asyncio.timeout(timeout):
            while True:
                ev = await self.next(timeout)
                if ev is None:
                    raise AssertionError(f"stream ended before the awaited event; got {[e.event for e in out]}")
                out.append(ev)
                if pred(ev):
                    return out

    async def rest(self, timeout: float = 20.0) -> list[Sse]:
        """Every event until the server ends the stream."""
        out: list[Sse] = []
        async with asyncio.timeout(timeout):
            while (ev := await self.next(timeout)) is not None:
                out.append(ev)
        return out


def status_is(state: str) -> Any:
    return lambda e: e.event == "job:status" and e.data is not None and e.data.get("state") == state
