"""Local HTTP servers for the job-type tests, on loopback only: files to download and a
small OpenAI-compatible chat-completions endpoint (streamed and not). Real sockets, real
HTTP; each server runs in a thread and records the connections it accepted and the requests it
answered."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Route = Callable[[BaseHTTPRequestHandler], None]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, Route]
    requests: list[tuple[str, str, dict[str, str], bytes]]
    connections: int = 0  # accepted, whether or not a request followed

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections += 1
        super().process_request(request, client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _dispatch(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        self.body = body
        route = self.server.routes.get(self.path.split("?")[0])
        if route is None:
            send(self, 404, b"not found", "text/plain")
        else:
            route(self)

    do_GET = _dispatch
    do_POST = _dispatch


def send(h: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str, length: int | None = None) -> None:
    h.send_response(status)
    h.send_header("content-type", ctype)
    h.send_header("content-length", str(len(body) if length is None else length))
    h.end_headers()
    h.wfile.write(body)


@contextmanager
def serve(routes: dict[str, Route], host: str = "127.0.0.1", port: int = 0) -> Iterator[tuple[str, _Server]]:
    """Serve `routes` on `host` (a loopback address: 127.0.0.1, another of 127/8, ::1); yields
    the base URL and the server."""
    server = (_Server6 if ":" in host else _Server)((host, port), _Handler)
    server.routes = routes
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    netloc = f"[{host}]" if ":" in host else host
    try:
        yield f"http://{netloc}:{server.server_address[1]}", server
    finally:
        server.shutdown()
        server.server_close()


# --- the fake model endpoint ---------------------------------------------------------------


def chat_route(answer: Callable[[dict[str, Any]], str], pieces: int = 8, delay: float = 0.0) -> Route:
    """POST /v1/chat/completions: streams `answer(request)` as chat.completion.chunk events."""

    def route(h: BaseHTTPRequestHandler) -> None:
        request = json.loads(h.body)  # type: ignore[attr-defined]
        if h.headers.get("authorization") != "Bearer test-key":
            send(h, 401, b'{"error": {"message": "bad key"}}', "application/json")
            return
        if "REJECT" in request["messages"][-1]["content"]:
            send(h, 400, b'{"error": {"message": "this request was rejected"}}', "application/json")
            return
        text = answer(request)
        ident = "chatcmpl-test"
        if not request.get("stream"):
            body = {
                "id": ident,
                "object": "chat.completion",
                "model": request["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            }
            send(h, 200, json.dumps(body).encode(), "application/json")
            return
        h.send_response(200)
        h.send_header("content-type", "text/event-stream")
        h.send_header("cache-control", "no-cache")
        h.send_header("connection", "close")
        h.end_headers()
        size = max(1, len(text) // pieces + 1)
        chunks = [{"role": "assistant", "content": ""}] + [
            {"content": text[i : i + size]} for i in range(0, len(text), size)
        ]
        for delta in chunks:
            event = {
                "id": ident,
                "object": "chat.completion.chunk",
                "model": request["model"],
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
            }
            h.wfile.write(b"data: " + json.dumps(event).encode() + b"\n\n")
            h.wfile.flush()
            if delay:
                time.sleep(delay)
        final = {
            "id": ident,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        h.wfile.write(b": keep-alive comment\n\n")
        h.wfile.write(b"data: " + json.dumps(final).encode() + b"\n\ndata: [DONE]\n\n")
        h.wfile.flush()
        h.close_connection = True

    return route
