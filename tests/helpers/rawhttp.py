"""HTTP/1.1 written byte for byte on a socket, for requests an HTTP client library will not
send as given: NUL or non-ASCII bytes in headers, megabyte URLs, bodies that are not UTF-8.
Every exchange is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names, latin-1 values
    body: bytes = b""
    streaming: bool = False  # a text/event-stream answer, left after its headers

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


class NoAnswer(Exception):
    """The server closed the connection (or went silent) without a complete answer."""


async def request(
    port: int,
    method: str,
    target: bytes | str,
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes | None = None,
    timeout: float = 10.0,
) -> Answer:
    """Send one request on a new connection (`Connection: close`) and read the answer.

    `target` goes on the request line as is (percent-encode it yourself). A streaming
    (text/event-stream) answer is returned once its headers are in. NoAnswer when the
    server closes without answering; TimeoutError when no answer comes within `timeout`.
    """
    raw_target = target.encode("latin-1") if isinstance(target, str) else target
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
        try:
            lines = [method.encode() + b" " + raw_target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
            lines += [name + b": " + value for name, value in headers or []]
            if body is not None:
                lines.append(b"Content-Length: %d" % len(body))
            writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + (body or b""))
            with contextlib.suppress(ConnectionError):
                await writer.drain()  # a server that answers early may close before it read everything
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                raise NoAnswer(f"{method} {raw_target[:100]!r}: connection closed without an answer") from exc
            status_line, *header_lines = head[:-4].split(b"\r\n")
            answer = Answer(int(status_line.split()[1]))
            for line in header_lines:
                name, _, value = line.partition(b":")
                answer.headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
            if answer.content_type.startswith("text/event-stream"):
                answer.streaming = True
            elif "content-length" in answer.headers:
                answer.body = await reader.readexactly(int(answer.headers["content-length"]))
            elif answer.headers.get("transfer-encoding", "").lower() == "chunked":
                answer.body = await _dechunk(reader)
            else:
                answer.body = await reader.read()
            return answer
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _dechunk(reader: asyncio.StreamReader) -> bytes:
    out = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return bytes(out)
        out += await reader.readexactly(size)
        await reader.readexactly(2)


@dataclass
class Stream:
    """An open text/event-stream response on a bare socket: read it as slowly as you
    like, or not at all (the server's writes then back up into the socket buffers)."""

    answer: Answer
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def close(self) -> None:
        self.writer.close()


async def open_stream(
    port: int,
    target: str,
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    rcvbuf: int | None = None,
    timeout: float = 10.0,
) -> Stream:
    """GET `target` and return once the answer's headers are in. `rcvbuf` shrinks the
    socket's receive buffer, so that a client that stops reading stops the server sooner."""
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    async with asyncio.timeout(timeout):
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=2**20)
        lines = [b"GET " + target.encode("latin-1") + b" HTTP/1.1", b"Host: 127.0.0.1"]
        lines += [name + b": " + value for name, value in headers or []]
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n")
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head[:-4].split(b"\r\n")
    answer = Answer(int(status_line.split()[1]), streaming=True)
    for line in header_lines:
        name, _, value = line.partition(b":")
        answer.headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return Stream(answer, reader, writer)


async def sse_frames(stream: Stream, *, piece: int = 65_536, pause: float = 0.0) -> AsyncIterator[bytes]:
    """The frames (the text between blank lines) of a chunked text/event-stream, read
    `piece` bytes at a time with `pause` seconds between reads (a slow client). Ends when
    the server ends the stream (its last chunk) or closes the connection."""
    raw = bytearray()  # received, not yet de-chunked
    text = bytearray()  # de-chunked, not yet split into frames
    finished = False
    while not finished:
        data = await stream.reader.read(piece)
        if not data:
            return
        raw += data
        at = 0
        while (nl := raw.find(b"\r\n", at)) >= 0:
            size = int(raw[at:nl].split(b";")[0], 16)
            if size == 0:  # the last chunk: the server ended the stream
                finished = True
                break
            if len(raw) < nl + 2 + size + 2:
                break
            text += raw[nl + 2 : nl + 2 + size]
            at = nl + 2 + size + 2
        del raw[:at]
        start = 0
        while (end := text.find(b"\n\n", start)) >= 0:
            if end > start:
                yield bytes(text[start:end])
            start = end + 2
        del text[:start]
        if pause and not finished:
            await asyncio.sleep(pause)
