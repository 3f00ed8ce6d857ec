"""Tests of pgcue.workers.types.fetch (the safe fetcher of resource-download) with real
sockets on loopback.

No test can send a packet off this machine:

* names are resolved only by :class:`FakeDNS` (the resolver hook), never by real DNS;
* the connector under the pinning backend is :class:`LocalNet`, which pretends that a few
  public IPs (1.1.1.1, 1.0.0.1) are servers started by the test on 127.0.0.1, passes loopback
  addresses through, and fails the test on any other address.  Where a test wants the real
  ``httpcore.AnyIOBackend`` instead it only ever reaches loopback addresses.

Every wait is bounded (``within``); no sleep is used to synchronise with a server.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import pickle
import socket
import ssl
import subprocess
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpcore
import pytest

from pgcue.workers.types import fetch
from pgcue.workers.types.fetch import (
    AddressNotAllowed,
    AllowList,
    BadStatus,
    FetchSettings,
    FetchTimeout,
    InvalidURL,
    ResponseTooLarge,
    SafeFetcher,
    TooManyRedirects,
    TransferTooSlow,
    TransportError,
    is_public_address,
    parse_ip_literal,
    redact,
)

T = TypeVar("T")

# A socket or task a test leaves behind surfaces as an unraisable exception: fail on it.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")


async def within(awaitable: Awaitable[T], seconds: float = 5.0) -> T:
    """Every wait in these tests goes through here, so a hang fails instead of blocking CI."""
    return await asyncio.wait_for(awaitable, seconds)


def refusal(host: str) -> str:
    return AddressNotAllowed.message_for(host)


async def drain(fetcher: SafeFetcher, url: str) -> bytes:
    """GET ``url`` through ``fetcher`` and return the body, whatever the status."""
    async with fetcher.stream(url) as response:
        return await response.read()


async def get(fetcher: SafeFetcher, url: str, seconds: float = 5.0) -> bytes:
    return await within(drain(fetcher, url), seconds)


# --------------------------------------------------------------------------------------------
# Test doubles: DNS, the network below the pinning backend, HTTP servers
# --------------------------------------------------------------------------------------------

HANG = "hang"  # a FakeDNS answer: never reply


class FakeDNS:
    """The resolver hook.  Unknown names raise gaierror, like NXDOMAIN."""

    def __init__(self) -> None:
        self.table: dict[str, list[str] | str] = {}
        self.calls: list[str] = []
        self.asked = asyncio.Event()

    async def __call__(self, host: str) -> list[str]:
        self.calls.append(host)
        self.asked.set()
        answer = self.table.get(host)
        if answer is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if answer == HANG:
            await asyncio.Event().wait()
        assert isinstance(answer, list)
        return answer


class LocalNet(httpcore.AsyncNetworkBackend):
    """Stands in for the Internet below PinningBackend: records what it is asked to connect to."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, int], tuple[str, int]] = {}
        self.connects: list[tuple[str, int]] = []
        self._real = httpcore.AnyIOBackend()

    def route(self, public_ip: str, port: int, to_port: int, to_host: str = "127.0.0.1") -> None:
        self.routes[(public_ip, port)] = (to_host, to_port)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connects.append((host, port))
        target = self.routes.get((host, port))
        if target is None:
            if not ipaddress.ip_address(host).is_loopback:
                raise AssertionError(f"test tried to connect to {host}:{port}, off this machine")
            target = (host, port)
        return await self._real.connect_tcp(target[0], target[1], timeout=timeout)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass
class Seen:
    method: str
    target: str
    headers: dict[str, str]
    local_host: str


# A handler answers one request; it returns True to keep the connection open for the next one.
Handler = Callable[["Seen", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]


@dataclass
class LocalServer:
    handler: Handler
    host: str = "127.0.0.1"
    ssl_context: ssl.SSLContext | None = None
    port: int = 0
    connections: int = 0
    requests: list[Seen] = field(default_factory=list)
    peer_closed: asyncio.Event = field(default_factory=asyncio.Event)
    got_request: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> LocalServer:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def url(self, path: str = "/") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    self.peer_closed.set()
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ln)}
                seen = Seen(method, target, headers, writer.get_extra_info("sockname")[0])
                self.requests.append(seen)
                self.got_request.set()
                if not await self.handler(seen, reader, writer):
                    return
        except ConnectionError:
            self.peer_closed.set()
        finally:
            self._tasks.discard(task)
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def respond(
    writer: asyncio.StreamWriter, status: int = 200, body: bytes = b"ok", headers: dict[str, str] | None = None
) -> None:
    head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n"
    for name, value in (headers or {}).items():
        head += f"{name}: {value}\r\n"
    writer.write(head.encode() + b"\r\n" + body)
    await writer.drain()


async def ok(seen: Seen, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    await respond(writer, body=b"hello from " + seen.local_host.encode())
    return True


async def wait_for_eof(reader: asyncio.StreamReader, server: LocalServer) -> None:
    """Block until the client closes the connection, then flag it."""
    while await reader.read(4096):
        pass
    server.peer_closed.set()


def trickler(server_box: list[LocalServer], every: float, length: int = 1000) -> tuple[Handler, asyncio.Event]:
    """A handler that sends the head, then one body byte every ``every`` seconds.

    The pause between bytes is a wait for the client's EOF with a timeout, so the server notices
    at once when the client closes the socket (and records it in ``peer_closed``).
    """
    first_byte = asyncio.Event()

    async def handler(seen: Seen, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n".encode())
        for _ in range(length):
            writer.write(b"x")
            await writer.drain()
            first_byte.set()
            try:
                if await asyncio.wait_for(reader.read(1), every) == b"":
                    server_box[0].peer_closed.set()
                    return False
            except TimeoutError:
                pass
        return False

    return handler, first_byte


@pytest.fixture
async def servers() -> AsyncIterator[Callable[..., Awaitable[LocalServer]]]:
    started: list[LocalServer] = []

    async def start(
        handler: Handler, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None, port: int = 0
    ) -> LocalServer:
        server = await LocalServer(handler, host=host, ssl_context=ssl_context, port=port).start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.close()


@pytest.fixture
def dns() -> FakeDNS:
    return FakeDNS()


@pytest.fixture
def net() -> LocalNet:
    return LocalNet()


@pytest.fixture
async def make(dns: FakeDNS, net: LocalNet) -> AsyncIterator[Callable[..., SafeFetcher]]:
    made: list[SafeFetcher] = []

    def factory(**kwargs: Any) -> SafeFetcher:
        kwargs.setdefault("resolver", dns)
        kwargs.setdefault("delegate", net)
        kwargs.setdefault("total_timeout", 10.0)
        kwargs.setdefault("connect_timeout", 5.0)
        kwargs.setdefault("read_timeout", 5.0)
        fetcher = SafeFetcher(**kwargs)
        made.append(fetcher)
        return fetcher

    yield factory
    for fetcher in made:
        await fetcher.aclose()


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


def entries(folder: Path) -> list[str]:
    """Names in ``folder``, sorted (a plain function: no blocking file calls in async tests)."""
    return sorted(p.name for p in folder.iterdir())


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --------------------------------------------------------------------------------------------
# 2. Address policy, without sockets
# --------------------------------------------------------------------------------------------

REFUSED_ADDRESSES = [
    # loopback
    "127.0.0.1",
    "127.255.255.254",
    "::1",
    # this network / unspecified
    "0.0.0.0",
    "0.1.2.3",
    "::",
    # private, ULA
    "10.0.0.1",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "fc00::1",
    "fd00::2",
    # link-local (and with a zone)
    "169.254.169.254",
    "fe80::1",
    "fe80::1%2",
    # CGNAT
    "100.64.0.1",
    "100.127.255.254",
    # multicast
    "224.0.0.1",
    "224.0.1.1",
    "239.255.255.250",
    "ff02::1",
    "ff0e::1",
    # broadcast
    "255.255.255.255",
    # reserved, IETF, 6to4 relay anycast
    "240.0.0.1",
    "192.0.0.9",
    "192.88.99.1",
    # documentation
    "192.0.2.1",
    "198.51.100.1",
    "203.0.113.1",
    "2001:db8::1",
    "3fff::1",
    # benchmarking
    "198.18.0.1",
    "198.19.255.255",
    "2001:2::1",
    # IPv4-mapped (all of them)
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:8.8.8.8",
    # IPv4-compatible
    "::127.0.0.1",
    "::10.0.0.1",
    "::8.8.8.8",
    # NAT64 w/ private v4
    "64:ff9b::7f00:1",
    "64:ff9b::a00:1",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b:1::a00:1",
    # 6to4 carrying a private v4
    "2002:7f00:1::",
    "2002:a00:1::1",
    "2002:c0a8:101::",
    # Teredo
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "2001::1",
    # discard, SRv6, old site-local
    "100::1",
    "5f00::1",
    "fec0::1",
]

PUBLIC_ADDRESSES = [
    "1.1.1.1",
    "8.8.8.8",
    "93.184.215.14",
    "2606:4700:4700::1111",
    "2a00:1450:4001:82a::200e",
    "64:ff9b::808:808",  # NAT64 of a public v4
    "2002:808:808::1",  # 6to4 of a public v4
]


@pytest.mark.parametrize("text", REFUSED_ADDRESSES)
def test_non_public_addresses_are_refused(text: str) -> None:
    assert not is_public_address(ipaddress.ip_address(text))


@pytest.mark.parametrize("text", PUBLIC_ADDRESSES)
def test_public_unicast_addresses_pass(text: str) -> None:
    assert is_public_address(ipaddress.ip_address(text))


@pytest.mark.parametrize(
    "spelling", ["127.1", "0177.0.0.1", "2130706433", "0x7f000001", "0x7F.1", "127.0.0.1.", "0177.0.1", "[127.0.0.1]"]
)
def test_inet_aton_spellings_of_loopback_parse_as_127_0_0_1(spelling: str) -> None:
    assert parse_ip_literal(spelling) == ipaddress.IPv4Address("127.0.0.1")


@pytest.mark.parametrize("name", ["example.com", "127.0.0.1.nip.io", "08.1", "1.2.3.4.5", "256.1", "1_0", " 1", "::g"])
def test_names_do_not_parse_as_ip_literals(name: str) -> None:
    assert parse_ip_literal(name) is None


def test_allow_list_normalises_names_and_networks() -> None:
    allow = AllowList(["Mirror.Internal.", "10.1.2.0/24", "fd00::5", "bücher.example"])
    assert allow.allows_name("mirror.internal") and allow.allows_name("MIRROR.internal.")
    assert not allow.allows_name("other.internal") and not allow.allows_name("x.mirror.internal")
    assert allow.allows_name("xn--bcher-kva.example")
    assert allow.allows_address(ipaddress.ip_address("10.1.2.3"))
    assert not allow.allows_address(ipaddress.ip_address("10.1.3.1"))
    assert allow.allows_address(ipaddress.ip_address("fd00::5"))
    # An IPv4 network never opens the IPv4-mapped IPv6 spelling of its addresses.
    assert not AllowList(["127.0.0.0/8"]).allows_address(ipaddress.ip_address("::ffff:127.0.0.1"))
    with pytest.raises(ValueError):
        AllowList(["http://x/"])


def test_fetch_settings_come_from_pgcue_fetch_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ALLOW_HOSTS", "TOTAL_TIMEOUT", "MIN_RATE", "RATE_WINDOW", "CONNECT_TIMEOUT", "MAX_REDIRECTS"):
        monkeypatch.delenv(f"PGCUE_FETCH_{name}", raising=False)
    assert FetchSettings.from_env() == FetchSettings()
    assert FetchSettings().allow_hosts == ()  # nothing internal is open unless an operator says so
    monkeypatch.setenv("PGCUE_FETCH_ALLOW_HOSTS", " Mirror.Internal , 10.1.2.0/24,")
    monkeypatch.setenv("PGCUE_FETCH_TOTAL_TIMEOUT", "2")
    monkeypatch.setenv("PGCUE_FETCH_MIN_RATE", "1000")
    monkeypatch.setenv("PGCUE_FETCH_RATE_WINDOW", "1.5")
    settings = FetchSettings.from_env()
    assert settings.allow_hosts == ("Mirror.Internal", "10.1.2.0/24")
    assert (settings.total_timeout, settings.min_rate, settings.rate_window) == (2.0, 1000.0, 1.5)


async def test_fetch_settings_build_a_fetcher_with_their_allow_list_and_limits(servers: Any) -> None:
    server = await servers(ok)
    url = f"http://127.0.0.1:{server.port}/"
    async with FetchSettings().fetcher() as closed:
        with pytest.raises(AddressNotAllowed):
            await get(closed, url)
    assert server.connections == 0
    async with FetchSettings(allow_hosts=("127.0.0.1",)).fetcher(max_bytes=5) as opened:
        with pytest.raises(ResponseTooLarge, match="over the limit of 5"):
            await get(opened, url)  # "hello from 127.0.0.1" is longer than 5 bytes
    assert server.connections == 1


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pw@Example.COM:8443/a/b?token=x#frag", "https://example.com:8443/a/b"),
        ("http://alice@example.com/", "http://example.com/"),
        ("https://example.com:443/p", "https://example.com/p"),
        ("http://[::1]:8080/x?y=1", "http://[::1]:8080/x"),
        ("http://example.com", "http://example.com/"),
        ("user:secret@host/x", "<non-http(s) URL>"),
        ("file:///etc/passwd", "<non-http(s) URL>"),
        ("http://example.com:notaport/?pw=1", "<unparseable URL>"),
    ],
)
def test_redact(url: str, expected: str) -> None:
    assert redact(url) == expected


def test_rate_meter_deadline() -> None:
    meter = fetch._RateMeter(min_rate=100, window=10, start=0.0)  # needs 1000 bytes per 10 s
    assert meter.deadline() == 10.0  # grace period: nothing checked before one window
    meter.record(1.0, 600)
    meter.record(3.0, 600)
    # 3.0's 600 bytes alone are too few; with 1.0's they fill a window until 1.0 slides out at 11.
    assert meter.deadline() == 11.0
    meter.record(12.5, 1000)
    assert meter.deadline() == 22.5  # 1000 bytes at 12.5 are enough on their own until 22.5
    assert fetch._RateMeter(min_rate=0, window=10, start=0.0).deadline() == float("inf")


def test_rate_meter_an_early_burst_does_not_pay_for_a_later_trickle() -> None:
    meter = fetch._RateMeter(min_rate=100, window=10, start=0.0)
    meter.record(0.5, 1000)  # one window's worth at once
    now = 0.6
    for _ in range(1000):  # then 10 bytes/s in tiny chunks, which the meter buckets together
        if now >= meter.deadline():
            break
        meter.record(now, 1)
        now += 0.1
    assert now < 10.6  # the burst slides out of the window at 10.5 and the rule fails there


def test_address_not_allowed_pickles() -> None:
    exc = pickle.loads(pickle.dumps(AddressNotAllowed("::1")))
    assert isinstance(exc, AddressNotAllowed) and str(exc) == refusal("::1") and exc.host == "[::1]"


async def test_default_resolver_uses_getaddrinfo() -> None:
    # A numeric host: getaddrinfo answers without any DNS traffic.
    assert await fetch.system_resolver("127.0.0.1") == ["127.0.0.1"]


# --------------------------------------------------------------------------------------------
# 2./3. Refusals over real sockets: odd spellings, uniform messages
# --------------------------------------------------------------------------------------------


async def test_every_spelling_of_loopback_is_refused_before_connecting(
    servers: Any, make: Any, dns: FakeDNS, net: LocalNet
) -> None:
    server = await servers(ok)
    p = server.port
    dns.table["127.0.0.1.nip.io"] = ["127.0.0.1"]
    dns.table["localhost"] = ["127.0.0.1"]  # would resolve; refused by name anyway
    cases = [
        (f"http://localhost:{p}/", "localhost"),
        (f"http://LOCALHOST.:{p}/", "localhost."),
        (f"http://foo.localhost:{p}/", "foo.localhost"),
        (f"http://127.0.0.1:{p}/", "127.0.0.1"),
        (f"http://127.1:{p}/", "127.1"),
        (f"http://0177.0.0.1:{p}/", "0177.0.0.1"),  # httpx rejects this spelling itself
        (f"http://2130706433:{p}/", "2130706433"),
        (f"http://0x7f000001:{p}/", "0x7f000001"),
        (f"http://0x7f.1:{p}/", "0x7f.1"),
        (f"http://127.0.0.1.:{p}/", "127.0.0.1."),
        (f"http://0.0.0.0:{p}/", "0.0.0.0"),  # Linux routes 0.0.0.0 to the local host
        (f"http://0:{p}/", "0"),
        (f"http://[::1]:{p}/", "[::1]"),
        (f"http://[0:0:0:0:0:0:0:1]:{p}/", "[0:0:0:0:0:0:0:1]"),
        (f"http://[::]:{p}/", "[::]"),
        (f"http://[::ffff:127.0.0.1]:{p}/", "[::ffff:127.0.0.1]"),  # connects to 127.0.0.1 on Linux
        (f"http://[::ffff:7f00:1]:{p}/", "[::ffff:7f00:1]"),
        (f"http://[::127.0.0.1]:{p}/", "[::127.0.0.1]"),
        (f"http://[64:ff9b::7f00:1]:{p}/", "[64:ff9b::7f00:1]"),
        (f"http://[2002:7f00:1::]:{p}/", "[2002:7f00:1::]"),
        (f"http://127.0.0.1.nip.io:{p}/", "127.0.0.1.nip.io"),
        (f"http://public.example@127.0.0.1:{p}/", "127.0.0.1"),
        (f"http://public.example:443@127.0.0.1:{p}/?q=1", "127.0.0.1"),
        (f"http://public.example%40127.0.0.1:{p}/", "public.example%40127.0.0.1"),  # a name, unresolvable
    ]
    fetcher = make()
    for url, host in cases:
        with pytest.raises(AddressNotAllowed) as caught:
            async with fetcher.stream(url):
                pass
        assert str(caught.value) == refusal(host), url
    assert server.connections == 0
    assert net.connects == []
    # Literal addresses never reach the resolver, and neither does "localhost".
    assert dns.calls == ["127.0.0.1.nip.io", "public.example%40127.0.0.1"]


@pytest.mark.parametrize("address", REFUSED_ADDRESSES)
async def test_names_resolving_to_non_public_addresses_are_refused(
    address: str, make: Any, dns: FakeDNS, net: LocalNet
) -> None:
    dns.table["tenant.example"] = [address]
    with pytest.raises(AddressNotAllowed) as caught:
        await get(make(), "http://tenant.example/")
    assert str(caught.value) == refusal("tenant.example")
    assert net.connects == []


async def test_one_text_for_open_closed_unresolvable_and_internal_targets(
    servers: Any, make: Any, dns: FakeDNS, net: LocalNet
) -> None:
    server = await servers(ok)
    dns.table["db.internal"] = ["10.0.0.7"]
    dns.table["slow.internal"] = HANG  # resolver never answers: connect_timeout ends it
    fetcher = make(connect_timeout=0.3)

    async def message(url: str) -> str:
        with pytest.raises(AddressNotAllowed) as caught:
            await get(fetcher, url)
        return str(caught.value)

    open_port = await message(f"http://127.0.0.1:{server.port}/")
    closed_port = await message(f"http://127.0.0.1:{unused_port()}/")
    assert open_port == closed_port == refusal("127.0.0.1")
    per_name = {
        name: await message(f"http://{name}:5432/")
        for name in ("db.internal", "no-such-name.internal", "slow.internal")
    }
    for name, text in per_name.items():
        assert text == refusal(name)
        assert text.replace(name, "HOST") == refusal("HOST")
        assert "5432" not in text and "10.0.0.7" not in text
    assert "loopback, private, link-local, CGNAT, multicast, reserved" in open_port
    assert server.connections == 0 and net.connects == []


# --------------------------------------------------------------------------------------------
# 1./5. Resolution once per connection, pinned to the checked address
# --------------------------------------------------------------------------------------------


async def test_public_name_connects_to_exactly_the_resolved_ip_with_its_own_host_header(
    servers: Any, make: Any, dns: FakeDNS, net: LocalNet
) -> None:
    server = await servers(ok)
    net.route("1.1.1.1", 80, server.port)
    dns.table["public.example"] = ["1.1.1.1"]
    async with make().stream("http://public.example/file?x=1") as response:
        assert await response.read() == b"hello from 127.0.0.1"
        assert response.url == "http://public.example/file"
    assert net.connects == [("1.1.1.1", 80)]
    assert server.requests[0].headers["host"] == "public.example"
    assert server.requests[0].target == "/file?x=1"
    assert server.requests[0].headers["accept-encoding"] == "identity"


async def test_mixed_public_and_private_answers_are_refused(
    servers: Any, make: Any, dns: FakeDNS, net: LocalNet
) -> None:
    server = await servers(ok)
    net.route("1.1.1.1", 80, server.port)
    dns.table["mixed.example"] = ["1.1.1.1", "10.0.0.1"]
    dns.table["mixed2.example"] = ["192.168.0.1", "1.1.1.1"]
    fetcher = make()
    for name in ("mixed.example", "mixed2.example"):
        with pytest.raises(AddressNotAllowed):
            await get(fetcher, f"http://{name}/")
    assert net.connects == [] and server.connections == 0


async def test_resolution_is_pinned_per_connection_against_rebinding(
    servers: Any, make: Any, dns: FakeDNS, net: LocalNet
) -> None:
    close_next = False

    async def handler(seen: Seen, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        await respond(writer, body=b"v", headers={"Connection": "close"} if close_next else None)
        return not close_next

    server = await servers(handler)
    net.route("1.1.1.1", 80, server.port)
    dns.table["rebind.example"] = ["1.1.1.1"]
    fetcher = make()

    async def fetch_once() -> bytes:
        return await get(fetcher, "http://rebind.example/")

    assert await fetch_once() == b"v"
    assert dns.calls == ["rebind.example"] and net.connects == [("1.1.1.1", 80)]

    # The name now points inside.  The open connection was made to the checked IP and is
    # reused as is: no new resolution, no new connect.
    dns.table["rebind.example"] = ["127.0.0.1"]
    close_next = True  # ... and the server ends that connection after this answer
    assert await fetch_once() == b"v"
    assert dns.calls == ["rebind.example"] and server.connections == 1

    # A new connection resolves again (exactly once) and is refused.
    with pytest.raises(AddressNotAllowed):
        await fetch_once()
    assert dns.calls == ["rebind.example", "rebind.example"]
    assert net.connects == [("1.1.1.1", 80)] and server.connections == 1


async def test_connection_goes_to_the_returned_address_with_the_real_backend(
    servers: Any, make: Any, dns: FakeDNS
) -> None:
    decoy = await servers(ok, host="127.0.0.1")
    target = await servers(ok, host="127.0.0.2", port=decoy.port)  # same port, other address
    dns.table["two.example"] = ["127.0.0.2"]
    fetcher = make(allow=["127.0.0.0/8"], delegate=None)  # delegate=None: httpcore.AnyIOBackend
    async with fetcher.stream(f"http://two.example:{target.port}/") as response:
        assert await within(response.read()) == b"hello from 127.0.0.2"
    assert decoy.connections == 0 and target.connections == 1
    assert target.requests[0].headers["host"] == f"two.example:{target.port}"
    assert dns.calls == ["two.example"]


async def test_checked_addresses_are_tried_in_order(servers: Any, make: Any, dns: FakeDNS, net: LocalNet) -> None:
    server = await servers(ok)
    net.route("1.1.1.1", 80, unused_port())  # nothing listens: connection refused
    net.route("1.0.0.1", 80, server.port)
    dns.table["multi.example"] = ["1.1.1.1", "1.0.0.1"]
    async with make().stream("http://multi.example/") as response:
        assert response.status_code == 200
    assert net.connects == [("1.1.1.1", 80), ("1.0.0.1", 80)]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(cert),
                "-days",
                "2",
                "-subj",
                "/CN=tls.example",
                "-addext",
                "subjectAltName=DNS:tls.example",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot make a test certificate with openssl: {exc}")
    return cert, key


async def test_tls_keeps_the_hostname_for_sni_and_verification(
    servers: Any, make: Any, dns: FakeDNS, net: LocalNet, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    sni: list[str | None] = []

    def record_sni(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        sni.append(name)

    server_context.sni_callback = record_sni
    server = await servers(ok, ssl_context=server_context)
    net.route("1.1.1.1", 443, server.port)
    dns.table["tls.example"] = ["1.1.1.1"]
    fetcher = make(ssl_context=ssl.create_default_context(cafile=str(cert)))
    async with fetcher.stream("https://tls.example/secure") as response:
        assert await within(response.read()) == b"hello from 127.0.0.1"
    assert net.connects == [("1.1.1.1", 443)]
    assert sni == ["tls.example"]
    assert server.requests[0].headers["host"] == "tls.example"
    # The certificate is checked against the URL's host, not the IP we connected to.
    with pytest.raises(TransportError, match="TLS handshake failed"):
        await get(fetcher, "https://1.1.1.1/")


# --------------------------------------------------------------------------------------------
# Redirects: every hop is checked
# --------------------------------------------------------------------------------------------


def redirector(status: int, location: str, **extra: str) -> Handler:
    async def handler(seen: Seen, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        await respond(writer, status=status, body=b"", headers={"Location": location, **extra})
        return True

    return handler


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirect_to_loopback_is_refused_at_the_hop(
    status: int, servers: Any, make: Any, dns: FakeDNS, net: LocalNet
) -> None:
    internal = await servers(ok)
    public = await servers(redirector(status, f"http://127.0.0.1:{internal.port}/admin"))
    net.route("1.1.1.1", 80, public.port)
    dns.table["public.example"] = ["1.1.1.1"]
    with pytest.raises(AddressNotAllowed) as caught:
        await get(make(), "http://public.example/start")
    assert str(caught.value) == refusal("127.0.0.1")
    assert len(public.requests) == 1 and internal.connections == 0
    assert net.connects == [("1.1.1.1", 80)]


@pytest.mark.parametrize(
    ("location", "host"),
    [
        ("http://localhost:{port}/", "localhost"),
        ("http://internal.example:{port}/", "internal.example"),  # resolves to 127.0.0.1
        ("http://0177.0.0.1:{port}/", "0177.0.0.1"),  # httpx cannot parse it; same refusal
        ("http://[::ffff:127.0.0.1]:{port}/", "[::ffff:127.0.0.1]"),
        ("//2130706433:{port}/", "2130706433"),  # scheme-relative
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
    ],
)
async def test_redirect_to_any_internal_spelling_is_refused(
    location: str, host: str, servers: Any, make: Any, dns: FakeDNS, net: LocalNet
) -> None:
    internal = await servers(ok)
    public = await servers(redirector(302, location.format(port=internal.port)))
    net.route("1.1.1.1", 80, public.port)
    dns.table["public.example"] = ["1.1.1.1"]
    dns.table["internal.example"] = ["127.0.0.1"]
    with pytest.raises(AddressNotAllowed) as caught:
        await get(make(), "http://public.example/")
    assert str(caught.value) == refusal(host)
    assert internal.connections == 0 and net.connects == [("1.1.1.1", 80)]


async def test_allowed_redirect_is_followed_without_reading_the_redirect_body(
    servers: Any, make: Any, dns: FakeDNS, net: LocalNet
) -> None:
    async def handler(seen: Seen, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        if seen.target == "/start":
            # Announces a gigabyte and sends none of it: httpx's own redirect following would
            # read it into memory (here: wait for it until a timeout).
            writer.write(b"HTTP/1.1 302 Found\r\nLocation: /final?sig=1\r\nContent-Length: 1000000000\r\n\r\n")
            await writer.drain()
            await wait_for_eof(reader, server)
            return False
        await respond(writer, body=b"done")
        return True

    server = await servers(handler)
    net.route("1.1.1.1", 80, server.port)
    dns.table["public.example"] = ["1.1.1.1"]
    async with make(read_timeout=30).stream("http://public.example/start") as response:
        assert await within(response.read()) == b"done"
        assert response.redirects == 1 and response.url == "http://public.example/final"
    assert [r.target for r in server.requests] == ["/start", "/final?sig=1"]
    await within(server.peer_closed.wait(), 2)  # the unread redirect's connection was closed
    # The redirect's connection was dropped, so the second hop was a new, re-resolved connection.
    assert dns.calls == ["public.example", "public.example"]


async def test_too_many_redirects(servers: Any, make: Any, dns: FakeDNS, net: LocalNet) -> None:
    server = await servers(redirector(302, "/again?token=secret"))
    net.route("1.1.1.1", 80, server.port)
    dns.table["loop.example"] = ["1.1.1.1"]
    with pytest.raises(TooManyRedirects) as caught:
        await get(make(max_redirects=3), "http://loop.example/")
    assert len(server.requests) == 4 and "secret" not in str(caught.value)


@pytest.mark.parametrize("location", ["file:///etc/passwd", "gopher://public.example:70/", "ftp://public.example/"])
async def test_redirect_to_other_schemes_is_refused(
    location: str, servers: Any, make: Any, dns: FakeDNS, net: LocalNet
) -> None:
    server = await servers(redirector(302, location))
    net.route("1.1.1.1", 80, server.port)
    dns.table["public.example"] = ["1.1.1.1"]
    with pytest.raises(InvalidURL):
        await get(make(), "http://public.example/")
    assert net.connects == [("1.1.1.1", 80)]


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/", "http:///nohost", "//example.com/"])
async def test_non_http_urls_are_refused(url: str, make: Any, net: LocalNet) -> None:
    with pytest.raises(InvalidURL):
        await get(make(), url)
    assert net.connects == []


# --------------------------------------------------------------------------------------------
# 4. The operator allow-list
# --------------------------------------------------------------------------------------------


async def test_loopback_server_is_reachable_only_when_allow_listed(servers: Any, make: Any, dns: FakeDNS) -> None:
    server = await servers(ok)
    dns.table["mirror.internal."] = ["127.0.0.1"]  # the resolver sees the name as written
    dns.table["other.internal"] = ["127.0.0.1"]
    by_ip = f"http://127.0.0.1:{server.port}/"
    by_name = f"http://MIRROR.Internal.:{server.port}/"  # case and trailing dot do not matter

    closed = make(delegate=None)
    for url in (by_ip, by_name):
        with pytest.raises(AddressNotAllowed):
            await get(closed, url)
    assert server.connections == 0

    by_network = make(allow=["127.0.0.0/8"], delegate=None)
    async with by_network.stream(by_ip) as response:
        assert await within(response.read()) == b"hello from 127.0.0.1"
    with pytest.raises(AddressNotAllowed):  # 10.x is not in the allowed network
        dns.table["db.internal"] = ["10.0.0.1"]
        await get(by_network, "http://db.internal/")

    by_hostname = make(allow=["mirror.internal"], delegate=None)
    async with by_hostname.stream(by_name) as response:
        assert response.status_code == 200
    for url in (by_ip, f"http://other.internal:{server.port}/"):  # only that name is opened
        with pytest.raises(AddressNotAllowed):
            await get(by_hostname, url)
    assert server.connections == 2


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback on this machine")
async def test_ipv6_loopback_only_when_allow_listed(servers: Any, make: Any) -> None:
    server = await servers(ok, host="::1")
    with pytest.raises(AddressNotAllowed):
        await get(make(delegate=None), server.url())
    async with make(allow=["::1/128"], delegate=None).stream(server.url()) as response:
        assert await within(response.read()) == b"hello from ::1"
    assert server.connections == 1


async def test_proxy_environment_variables_are_ignored(
    servers: Any, make: Any, dns: FakeDNS, net: LocalNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = await servers(ok)
    server = await servers(ok)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, proxy.url())
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    net.route("1.1.1.1", 80, server.port)
    dns.table["public.example"] = ["1.1.1.1"]
    fetcher = make()
    async with fetcher.stream("http://public.example/") as response:
        assert response.status_code == 200
    with pytest.raises(AddressNotAllowed):
        await get(fetcher, f"http://127.0.0.1:{server.port}/")
    assert proxy.connections == 0 and server.connections == 1


async def test_cookies_are_not_carried_between_downloads(servers: Any, make: Any, dns: FakeDNS, net: LocalNet) -> None:
    async def handler(seen: Seen, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        await respond(writer, headers={"Set-Cookie": "session=tenant-a; Path=/"})
        return True

    server = await servers(handler)
    net.route("1.1.1.1", 80, server.port)
    dns.table["shared.example"] = ["1.1.1.1"]
    fetcher = make()
    for _ in range(2):
        await get(fetcher, "http://shared.example/")
    assert [r.headers.get("cookie") for r in server.requests] == [None, None]


# --------------------------------------------------------------------------------------------
# 6. No credentials or query strings in errors
# --------------------------------------------------------------------------------------------

SECRETS = ("alice", "s3cret", "t0ken", "fr4g")


def assert_no_secrets(exc: BaseException) -> None:
    rendered = "".join(traceback.format_exception(exc)) + repr(exc) + str(getattr(exc, "url", ""))
    for secret in SECRETS:
        assert secret not in rendered


async def test_errors_never_carry_credentials_or_query(
    servers: Any, make: Any, dns: FakeDNS, net: LocalNet, tmp_path: Path
) -> None:
    async def silent(seen: Seen, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        await wait_for_eof(reader, server)
        return False

    async def missing(seen: Seen, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        await respond(writer, status=404, body=b"no")
        return True

    server = await servers(silent)
    gone = await servers(missing)
    net.route("1.1.1.1", 80, server.port)
    net.route("1.0.0.1", 80, gone.port)
    net.route("1.0.0.2", 80, unused_port())
    dns.table.update({"slow.example": ["1.1.1.1"], "gone.example": ["1.0.0.1"], "down.example": ["1.0.0.2"]})
    fetcher = make(total_timeout=0.5)
    creds = "alice:s3cret@"
    tail = "/path/file?token=t0ken#fr4g"
    expectations: list[tuple[str, type[Exception], str]] = [
        (f"http://{creds}127.0.0.1{tail}", AddressNotAllowed, refusal("127.0.0.1")),
        (f"http://{creds}slow.example{tail}", FetchTimeout, "http://slow.example/path/file exceeded"),
        (f"http://{creds}gone.example{tail}", BadStatus, "http://gone.example/path/file answered HTTP 404"),
        (f"http://{creds}down.example{tail}", TransportError, "could not connect to http://down.example/path/file"),
        (f"http://{creds}0177.0.0.1{tail}", AddressNotAllowed, refusal("0177.0.0.1")),
        (f"http://{creds}example.com:bad{tail}", InvalidURL, "invalid URL: <unparseable URL>"),
    ]
    for url, kind, text in expectations:
        with pytest.raises(kind) as caught:
            await within(fetcher.download(url, tmp_path / "out"))
        assert str(caught.value).startswith(text), str(caught.value)
        assert_no_secrets(caught.value)
    assert entries(tmp_path) == []


# --------------------------------------------------------------------------------------------
# 7. Slow servers, time limits, cancellation
# --------------------------------------------------------------------------------------------


async def test_min_rate_stops_a_server_trickling_one_byte_every_two_seconds(
    servers: Any, make: Any, dns: FakeDNS, net: LocalNet
) -> None:
    box: list[LocalServer] = []
    handler, _ = trickler(box, every=2.0)
    box.append(server := await servers(handler))
    net.route("1.1.1.1", 80, server.port)
    dns.table["slow.example"] = ["1.1.1.1"]
    # read_timeout 30 s would never fire (a byte every 2 s), and total_timeout is far away.
    fetcher = make(min_rate=50, rate_window=1.0, read_timeout=30, total_timeout=60)
    started = time.monotonic()
    with pytest.raises(TransferTooSlow, match=r"^http://slow.example/ sent less than 50 bytes/s over 1 s"):
        await get(fetcher, "http://slow.example/", seconds=10)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 3.0, elapsed
    await within(server.peer_closed.wait(), 2)


async def test_min_rate_lets_a_steady_server_finish(servers: Any, make: Any, dns: FakeDNS, net: LocalNet) -> None:
    async def steady(seen: Seen, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n")
        for _ in range(30):  # ~2000 B/s for 1.5 s, three windows of 0.5 s
            writer.write(b"y" * 100)
            await writer.drain()
            await asyncio.sleep(0.05)  # the server's pace, not synchronisation
        return True

    server = await servers(steady)
    net.route("1.1.1.1", 80, server.port)
    dns.table["steady.example"] = ["1.1.1.1"]
    started = time.monotonic()
    async with make(min_rate=200, rate_window=0.5).stream("http://steady.example/") as response:
        assert len(await within(response.read())) == 3000
    assert time.monotonic() - started > 1.0  # longer than the window: the rule was in force


async def test_total_time_limit_applies_to_the_body(servers: Any, make: Any, dns: FakeDNS, net: LocalNet) -> None:
    box: list[LocalServer] = []
    handler, _ = trickler(box, every=0.1)  # fast enough for any rate rule, but endless
    box.append(server := await servers(handler))
    net.route("1.1.1.1", 80, server.port)
    dns.table["endless.example"] = ["1.1.1.1"]
    fetcher = make(min_rate=0, total_timeout=1.0, read_timeout=30)
    started = time.monotonic()
    with pytest.raises(FetchTimeout, match="exceeded the total time limit of 1 s"):
        await get(fetcher, "http://endless.example/")
    assert 0.9 <= time.monotonic() - started < 2.5
    await within(server.peer_closed.wait(), 2)


async def test_total_time_limit_applies_before_the_headers(
    servers: Any, make: Any, dns: FakeDNS, net: LocalNet
) -> None:
    async def mute(seen: Seen, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        await wait_for_eof(reader, server)
        return False

    server = await servers(mute)
    net.route("1.1.1.1", 80, server.port)
    dns.table["mute.example"] = ["1.1.1.1"]
    with pytest.raises(FetchTimeout, match="exceeded the total time limit"):
        await get(make(total_timeout=1.0, read_timeout=30), "http://mute.example/")
    await within(server.peer_closed.wait(), 2)


async def test_cancelling_a_trickling_download_ends_at_once_and_closes_the_socket(
    servers: Any, make: Any, dns: FakeDNS, net: LocalNet, tmp_path: Path
) -> None:
    box: list[LocalServer] = []
    handler, first_byte = trickler(box, every=2.0)
    box.append(server := await servers(handler))
    net.route("1.1.1.1", 80, server.port)
    dns.table["trickle.example"] = ["1.1.1.1"]
    fetcher = make(min_rate=0, read_timeout=30, total_timeout=60)
    task = asyncio.create_task(fetcher.download("http://trickle.example/", tmp_path / "out"))
    await within(first_byte.wait())
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await within(task, 1.0)
    assert time.monotonic() - started < 1.0
    await within(server.peer_closed.wait(), 1.0)  # the server saw the socket close
    assert fetcher.open_connections == 0
    assert entries(tmp_path) == []  # no partial file left behind


async def test_cancelling_during_resolution_and_before_headers(
    servers: Any, make: Any, dns: FakeDNS, net: LocalNet
) -> None:
    async def mute(seen: Seen, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        await wait_for_eof(reader, server)
        return False

    server = await servers(mute)
    net.route("1.1.1.1", 80, server.port)
    dns.table.update({"hang.example": HANG, "mute.example": ["1.1.1.1"]})
    fetcher = make(connect_timeout=30, read_timeout=30, total_timeout=60)
    for url, reached in (("http://hang.example/", dns.asked), ("http://mute.example/", server.got_request)):
        task = asyncio.create_task(drain(fetcher, url))
        await within(reached.wait())  # inside the resolver / waiting for the response head
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await within(task, 1.0)
        assert time.monotonic() - started < 1.0
    await within(server.peer_closed.wait(), 1.0)
    assert fetcher.open_connections == 0


# --------------------------------------------------------------------------------------------
# 8. Streaming with a size cap
# --------------------------------------------------------------------------------------------


async def test_stream_to_a_file_chunk_by_chunk(
    servers: Any, make: Any, dns: FakeDNS, net: LocalNet, tmp_path: Path
) -> None:
    payload = os.urandom(300_000)

    async def big(seen: Seen, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        await respond(writer, body=payload, headers={"Content-Type": "application/octet-stream"})
        return True

    server = await servers(big)
    net.route("1.1.1.1", 80, server.port)
    dns.table["files.example"] = ["1.1.1.1"]
    fetcher = make()
    chunks = 0
    with open(tmp_path / "streamed", "wb") as out:
        async with fetcher.stream("http://files.example/blob", max_bytes=len(payload)) as response:
            response.raise_for_status()
            assert response.content_length == len(payload)
            async for chunk in response.body():
                out.write(chunk)
                chunks += 1
            assert response.bytes_received == len(payload)
            with pytest.raises(RuntimeError):
                async for _ in response.body():
                    pass
    assert (tmp_path / "streamed").read_bytes() == payload and chunks > 1

    result = await within(fetcher.download("http://files.example/blob", tmp_path / "downloaded"))
    assert (tmp_path / "downloaded").read_bytes() == payload
    assert result.size == len(payload) and result.status_code == 200
    assert result.content_type == "application/octet-stream" and result.url == "http://files.example/blob"
    assert len(result.sha256) == 64
    assert entries(tmp_path) == ["downloaded", "streamed"]


async def test_announced_length_over_the_cap_is_refused_before_the_body(
    servers: Any, make: Any, dns: FakeDNS, net: LocalNet, tmp_path: Path
) -> None:
    async def big(seen: Seen, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        await writer.drain()
        await wait_for_eof(reader, server)
        return False

    server = await servers(big)
    net.route("1.1.1.1", 80, server.port)
    dns.table["big.example"] = ["1.1.1.1"]
    with pytest.raises(ResponseTooLarge, match="announces 1000 bytes, over the limit of 999"):
        await within(make().download("http://big.example/", tmp_path / "out", max_bytes=999))
    await within(server.peer_closed.wait(), 2)
    assert entries(tmp_path) == []


async def test_chunked_body_over_the_cap_is_cut_off(servers: Any, make: Any, dns: FakeDNS, net: LocalNet) -> None:
    async def chunked(seen: Seen, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(100):
            writer.write(b"64\r\n" + b"z" * 100 + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    server = await servers(chunked)
    net.route("1.1.1.1", 80, server.port)
    dns.table["chunked.example"] = ["1.1.1.1"]
    fetcher = make()
    received = 0
    with pytest.raises(ResponseTooLarge, match="sent more than the limit of 1000 bytes"):
        async with fetcher.stream("http://chunked.example/", max_bytes=1000) as response:
            assert response.content_length is None
            async for chunk in response.body():
                received += len(chunk)
    assert received <= 1000
    async with fetcher.stream("http://chunked.example/", max_bytes=10_000) as response:
        assert len(await within(response.read())) == 10_000  # exactly the cap is fine


async def test_download_refuses_error_statuses_without_leaving_files(
    servers: Any, make: Any, dns: FakeDNS, net: LocalNet, tmp_path: Path
) -> None:
    async def missing(seen: Seen, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        await respond(writer, status=404, body=b"not here")
        return True

    server = await servers(missing)
    net.route("1.1.1.1", 80, server.port)
    dns.table["files.example"] = ["1.1.1.1"]
    with pytest.raises(BadStatus) as caught:
        await within(make().download("http://files.example/x?sig=abc", tmp_path / "out"))
    assert caught.value.status_code == 404 and str(caught.value) == "http://files.example/x answered HTTP 404"
    assert entries(tmp_path) == []


async def test_download_never_replaces_a_special_file(
    servers: Any, make: Any, dns: FakeDNS, net: LocalNet, tmp_path: Path
) -> None:
    server = await servers(ok)
    net.route("1.1.1.1", 80, server.port)
    dns.table["files.example"] = ["1.1.1.1"]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for dest in (fifo, tmp_path):  # a FIFO (think /dev/null) and a directory
        with pytest.raises(ValueError, match="not a regular file"):
            await within(make().download("http://files.example/", dest))
    assert server.connections == 0  # refused before any network I/O
    assert entries(tmp_path) == ["fifo"]
