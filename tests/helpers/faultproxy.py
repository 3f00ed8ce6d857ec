"""A TCP proxy on loopback between a client and the real API that can lose an answer:
it forwards a request, waits for the API's whole answer (so whatever the request did is
committed), then closes the client's connection without relaying it. Also: answer 503
itself, or relay only the first bytes of an answer's body. Requests and answers with a
Content-Length are relayed one by one; a chunked answer (an SSE stream) turns the rest of
the connection into a plain pipe."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass
class Rule:
    method: str
    path: str  # a prefix of the request's path
    action: str  # "drop" | "503" | "cut"
    times: int = 1
    cut_after: int = 0  # "cut": body bytes relayed before the connection is closed


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    action: str


@dataclass
class FaultProxy:
    upstream_port: int
    rules: list[Rule] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, method: str, path: str, action: str, times: int = 1, cut_after: int = 0) -> None:
        self.rules.append(Rule(method, path, action, times, cut_after))

    def seen_for(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path.startswith(path)]

    def _rule(self, method: str, path: str) -> Rule | None:
        for rule in self.rules:
            if rule.times > 0 and rule.method == method and path.startswith(rule.path):
                rule.times -= 1
                return rule
        return None

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_reader: asyncio.StreamReader | None = None
        up_writer: asyncio.StreamWriter | None = None
        try:
            while True:
                head = await _read_head(reader)
                if head is None:
                    return
                method, path, headers = _parse(head, request=True)
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                rule = self._rule(method, path)
                action = rule.action if rule else "pass"
                self.seen.append(Seen(method, path, headers, action))
                if action == "503":
                    payload = (
                        b'{"type":"https://pgcue.dev/problems/database-unavailable","title":"Database unavailable",'
                        b'"status":503,"detail":"injected by the test proxy"}'
                    )
                    writer.write(
                        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n"
                        b"retry-after: 0\r\ncontent-length: %d\r\n\r\n%s" % (len(payload), payload)
                    )
                    await writer.drain()
                    continue
                if up_writer is None:
                    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
                assert up_reader is not None
                up_writer.write(head + body)
                await up_writer.drain()
                answer_head = await _read_head(up_reader)
                if answer_head is None:
                    return
                _, _, answer_headers = _parse(answer_head, request=False)
                if "chunked" in answer_headers.get("transfer-encoding", ""):
                    writer.write(answer_head)
                    await writer.drain()
                    await _pipe_both(reader, writer, up_reader, up_writer)
                    return
                answer = await up_reader.readexactly(int(answer_headers.get("content-length", "0")))
                if action == "drop":
                    return  # the API has answered (and committed); the client gets nothing
                if action == "cut":
                    writer.write(answer_head + answer[: rule.cut_after if rule else 0])
                    await writer.drain()
                    return
                writer.write(answer_head + answer)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    w.close()
            self._tasks.discard(task)


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


def _parse(head: bytes, request: bool) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    first = lines[0].split(" ")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if request:
        return first[0], first[1], headers
    return first[1], "", headers


async def _pipe_both(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await src.read(65536):
                dst.write(chunk)
                await dst.drain()

    _, pending = await asyncio.wait(
        [asyncio.ensure_future(pipe(up_reader, writer)), asyncio.ensure_future(pipe(reader, up_writer))],
        return_when=asyncio.FIRST_COMPLETED,
    )
    for task in pending:
        task.cancel()


@contextlib.asynccontextmanager
async def fault_proxy(upstream_port: int) -> AsyncIterator[FaultProxy]:
    proxy = await FaultProxy(upstream_port).start()
    try:
        yield proxy
    finally:
        await proxy.close()
