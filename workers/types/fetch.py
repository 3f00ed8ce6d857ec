"""Fetch untrusted, tenant-supplied http(s) URLs without becoming an SSRF proxy: the one
downloader of every job type that fetches what a payload names (resource-download).

Threat model
------------
A tenant hands us a URL; we download it on a worker that sits inside our network.  The tenant
must not be able to make that worker talk to anything that is not on the public Internet
(loopback, the metadata service at 169.254.169.254, private subnets, ...), must not learn
anything about internal hosts from our error messages (no port scanning, no probing which internal
names exist), and must not be able to tie a worker up forever with a slow server.

How it is enforced
------------------
* Address check at connect time, per connection.  httpx hands every connection (the first one
  and each redirect hop) to an httpcore network backend.  :class:`PinningBackend` is that backend:
  it resolves the host exactly once, checks *every* resulting address against the policy
  (:func:`is_public_address` plus the operator's allow-list), and then asks the real backend
  (``httpcore.AnyIOBackend``) to connect to the checked IP literal.  Because the IP that was
  checked is the IP that is connected to, a name that resolves to a public address now and to
  127.0.0.1 a second later (DNS rebinding) cannot slip through.  TLS still uses the hostname
  from the URL for SNI and certificate verification, and httpx still sends it as ``Host``,
  because httpcore takes both from the request's origin, not from the backend.
* One fixed refusal text.  Every refused target, whether it is internal, malformed as an IP
  literal or does not resolve at all, raises :class:`AddressNotAllowed` with the same message
  that names only the host as it appears in the URL.  Refused targets are never connected to,
  so open and closed internal ports look the same.
* No ambient configuration.  ``trust_env=False`` (no proxy, netrc or SSL_CERT_FILE variables),
  no cookie persistence between downloads of different tenants, ``Accept-Encoding: identity``.
* Redirects are followed by :class:`SafeFetcher` itself, one hop at a time (httpx's
  ``follow_redirects=True`` would read each redirect body into memory, without a size limit).
* Time: a total deadline per download (connect, redirects, headers and body) and a minimum
  transfer rate averaged over a sliding window, both enforced while the body streams, so a
  server sending one byte every 2 seconds cannot keep a worker forever (httpx's read timeout
  restarts with every byte and would never fire).  Everything is a plain coroutine in the
  caller's task, so cancelling the task stops the download at once and closes the socket.
* Errors never contain credentials or query strings: messages render URLs through
  :func:`redact`, and the underlying httpx/httpcore exceptions (whose text may contain the URL or
  the resolved IP) are not chained as the visible cause.

API summary
-----------
::

    async with SafeFetcher(allow=["10.1.2.0/24", "mirror.internal"]) as fetcher:
        # streaming, e.g. chunk by chunk into a file:
        async with fetcher.stream(url, max_bytes=50 * 2**20) as response:
            response.raise_for_status()
            async for chunk in response.body():
                out.write(chunk)
        # or the whole thing into a file (atomic rename, partial file removed on any error):
        result = await fetcher.download(url, "/path/to/file", max_bytes=50 * 2**20)

The module targets asyncio (pgcue's workers run asyncio, under uvloop): it uses
``asyncio.timeout_at`` and the running loop's ``getaddrinfo``. Its settings are
FetchSettings (PGCUE_FETCH_*), read by the job types that use it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import hashlib
import http.cookiejar
import ipaddress
import math
import os
import re
import socket
import ssl
import stat
import tempfile
import typing
import urllib.parse
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from typing import Any, Final

import httpcore
import httpx
import idna
import msgspec

from pgcue.core.config import env_struct

__all__ = [
    "Address",
    "AddressNotAllowed",
    "AllowList",
    "BadStatus",
    "DownloadResult",
    "FetchError",
    "FetchSettings",
    "FetchTimeout",
    "InvalidURL",
    "PinnedTransport",
    "PinningBackend",
    "Resolver",
    "ResponseTooLarge",
    "SafeFetcher",
    "SafeResponse",
    "TooManyRedirects",
    "TransferTooSlow",
    "TransportError",
    "is_public_address",
    "parse_ip_literal",
    "redact",
    "system_resolver",
]


class FetchSettings(msgspec.Struct, frozen=True, kw_only=True):
    """PGCUE_FETCH_*: what a download may do.

    allow_hosts: hostnames and CIDR networks an operator opens although they are not
    public (comma-separated: `mirror.internal,10.1.2.0/24`); everything else must resolve
    to public unicast addresses only. total_timeout: seconds for one file, start to end.
    min_rate / rate_window: a file must arrive at least min_rate bytes/s, averaged over
    rate_window seconds, or it fails (and is retried). An allowed IP network opens every
    spelling of its addresses (127.1 is 127.0.0.1) but not their IPv6 forms."""

    allow_hosts: tuple[str, ...] = ()
    total_timeout: float = 900.0
    min_rate: float = 1024.0
    rate_window: float = 10.0
    connect_timeout: float = 10.0
    max_redirects: int = 5

    def __post_init__(self) -> None:
        # Checked when a worker loads its types, so a bad value stops it at start-up with
        # a message naming the variable, not every download with a retryable error.
        for name in ("total_timeout", "rate_window", "connect_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"PGCUE_FETCH_{name.upper()} must be greater than 0")
        if self.min_rate < 0 or self.max_redirects < 0:
            raise ValueError("PGCUE_FETCH_MIN_RATE and PGCUE_FETCH_MAX_REDIRECTS must be 0 or more")
        try:
            AllowList(self.allow_hosts)
        except ValueError as exc:
            raise ValueError(f"PGCUE_FETCH_ALLOW_HOSTS: {exc}") from None

    @classmethod
    def from_env(cls) -> FetchSettings:
        return env_struct(cls, "PGCUE_FETCH_")

    def fetcher(self, *, max_bytes: int | None = None) -> SafeFetcher:
        return SafeFetcher(
            allow=self.allow_hosts,
            total_timeout=self.total_timeout,
            min_rate=self.min_rate,
            rate_window=self.rate_window,
            connect_timeout=self.connect_timeout,
            max_redirects=self.max_redirects,
            max_bytes=max_bytes,
        )


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: ``async def resolver(host) -> [ip, ...]``.  ``host`` is the URL's host as httpx normalises it
#: (lower case, IDNA/punycode, no brackets).  Raising ``OSError`` (e.g. ``socket.gaierror``) or
#: returning nothing means "does not resolve".
Resolver = Callable[[str], Awaitable[Sequence[str | Address]]]


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class FetchError(Exception):
    """Base class of every error this module raises for a fetch.

    ``url`` is the redacted URL (see :func:`redact`) the error is about, when there is one.
    """

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class AddressNotAllowed(FetchError):
    """The target host has no address we may connect to, or does not resolve at all.

    The message is deliberately the same for every reason (internal address, mixed
    public/internal answers, unresolvable name, resolver timeout, odd IP spelling): a tenant
    must not be able to use the error text to map our network.
    """

    REASON: Final = (
        "unresolvable names and loopback, private, link-local, CGNAT, multicast, reserved "
        "and other non-public addresses are refused"
    )

    def __init__(self, host: str) -> None:
        self.host = _display_host(host)
        super().__init__(self.message_for(host))

    @classmethod
    def message_for(cls, host: str) -> str:
        """The one refusal text, for ``host`` as it appears in the URL."""
        return f"host {_display_host(host)} has no public address ({cls.REASON})"

    def __reduce__(self) -> tuple[type[AddressNotAllowed], tuple[str]]:
        # Exception pickling replays ``args`` (the message) into __init__, which takes a host.
        return (type(self), (self.host,))


class InvalidURL(FetchError):
    """The URL (or a redirect's Location) is malformed or not http/https."""


class TooManyRedirects(FetchError):
    """More redirect hops than ``max_redirects``."""


class FetchTimeout(FetchError):
    """The total time limit of the download, or httpx's connect/read/write timeout, expired."""


class TransferTooSlow(FetchError):
    """The body arrived slower than ``min_rate`` bytes/s, averaged over ``rate_window`` seconds."""


class ResponseTooLarge(FetchError):
    """The body is (or announces itself as) larger than ``max_bytes``."""


class BadStatus(FetchError):
    """Raised by :meth:`SafeResponse.raise_for_status` and :meth:`SafeFetcher.download`."""

    def __init__(self, message: str, *, url: str | None = None, status_code: int) -> None:
        super().__init__(message, url=url)
        self.status_code = status_code


class TransportError(FetchError):
    """Connection refused/reset, TLS failure, or an HTTP protocol error from an allowed host."""


# --------------------------------------------------------------------------------------------
# Log-safe URL rendering
# --------------------------------------------------------------------------------------------

_UNPARSEABLE: Final = "<unparseable URL>"
_NOT_HTTP: Final = "<non-http(s) URL>"


def redact(url: str | httpx.URL) -> str:
    """``scheme://host[:port]/path`` of ``url``: no userinfo, no query, no fragment.

    Safe for logs and error messages.  A URL that cannot be parsed renders as a fixed
    placeholder, never as (part of) its text, since we cannot tell where a secret in it ends.
    """
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        host = parsed.raw_host.decode("ascii")
    except (httpx.InvalidURL, TypeError, UnicodeError):
        return _UNPARSEABLE
    if parsed.scheme not in ("http", "https") or not host:
        # Without "//authority" the rest is opaque: in "user:secret@host" httpx sees the scheme
        # "user" and the path "secret@host".  Render nothing of it.
        return _NOT_HTTP
    netloc = _display_host(host)
    if parsed.port is not None:  # httpx drops the scheme's default port already
        netloc = f"{netloc}:{parsed.port}"
    # raw_path is percent-encoded path *plus* query; keep only the path.
    path = parsed.raw_path.split(b"?", 1)[0].decode("ascii")
    return f"{parsed.scheme}://{netloc}{path}"


def _display_host(host: str) -> str:
    """IPv6 literals in brackets, as in a URL; everything else as given."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


# --------------------------------------------------------------------------------------------
# Address policy
# --------------------------------------------------------------------------------------------

# Explicit tables on top of ipaddress's ``is_global``: what ``is_global`` returns changes between
# Python patch releases, and on 3.11.7 it says True for multicast (224.0.1.1), the 6to4 relay
# anycast (192.88.99.1), NAT64/6to4 addresses embedding 10.0.0.1, IPv4-mapped addresses and the
# new documentation prefix 3fff::/20.  Refusing here does not depend on that table.
_V4_REFUSED: Final[tuple[ipaddress.IPv4Network, ...]] = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network"; connecting to 0.0.0.0 reaches the local host on Linux
        "10.0.0.0/8",  # private (RFC 1918)
        "100.64.0.0/10",  # CGNAT shared address space (RFC 6598)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, incl. the cloud metadata service 169.254.169.254
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # TEST-NET-1 (documentation)
        "192.88.99.0/24",  # deprecated 6to4 relay anycast (RFC 7526)
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking (RFC 2544)
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, incl. the limited broadcast 255.255.255.255
    )
)

# IPv6 is decided by an allow-range first: every routable unicast address IANA has handed out is
# in 2000::/3.  That single test refuses ::, ::1, IPv4-mapped ::ffff:0:0/96, IPv4-compatible
# ::/96, local-use NAT64 64:ff9b:1::/48, discard 100::/64, SRv6 5f00::/16, ULA fc00::/7,
# link-local fe80::/10, site-local fec0::/10 and multicast ff00::/8.
_V6_GLOBAL_UNICAST: Final = ipaddress.IPv6Network("2000::/3")
_V6_REFUSED: Final[tuple[ipaddress.IPv6Network, ...]] = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "2001::/23",  # IETF protocol assignments: Teredo 2001::/32, benchmarking, ORCHID, ...
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation (RFC 9637)
    )
)
# Prefixes that carry an IPv4 address which is where the packets really end up: such an address
# is as public as the IPv4 address it embeds.
_NAT64_WELL_KNOWN: Final = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052
_SIX_TO_FOUR: Final = ipaddress.IPv6Network("2002::/16")  # RFC 3056
_TEREDO: Final = ipaddress.IPv6Network("2001::/32")  # RFC 4380


def is_public_address(ip: Address) -> bool:
    """True if ``ip`` is a public unicast address, i.e. one a tenant may make us connect to."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ip.is_global and not any(ip in net for net in _V4_REFUSED)
    if ip in _NAT64_WELL_KNOWN:
        return is_public_address(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip in _SIX_TO_FOUR:
        embedded = ip.sixtofour
        return embedded is not None and is_public_address(embedded)
    if ip in _TEREDO:
        # The real endpoint is an obfuscated IPv4 address behind a UDP relay: no legitimate
        # download server lives there, and the embedded address cannot be trusted.
        return False
    if ip not in _V6_GLOBAL_UNICAST or any(ip in net for net in _V6_REFUSED):
        return False
    return ip.is_global


_V4_PART = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+")


def parse_ip_literal(host: str) -> Address | None:
    """Parse ``host`` as an IP literal the way the C library does, or return None for a name.

    Besides ``127.0.0.1`` and ``::1`` this accepts what ``inet_aton`` (and hence
    ``getaddrinfo``) and the WHATWG URL standard accept: fewer than four parts (``127.1``), octal
    (``0177.0.0.1``), hex (``0x7f000001``), one big number (``2130706433``), a trailing dot.  We
    classify these ourselves so that refusing them does not depend on what the resolver hook
    makes of them.
    """
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text)
        except ValueError:
            return None
    parts = text.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # one trailing dot, as in a fully qualified name
    if not 1 <= len(parts) <= 4 or not all(_V4_PART.fullmatch(p) for p in parts):
        return None
    values: list[int] = []
    for part in parts:
        if part[:2] in ("0x", "0X"):
            values.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part.startswith("0"):
            if any(c in "89" for c in part):
                return None  # "08" is neither octal nor decimal for inet_aton
            values.append(int(part, 8))
        else:
            values.append(int(part))
    *head, last = values
    if any(v > 0xFF for v in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    number = last
    for index, value in enumerate(head):
        number += value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def _normalise_name(host: str) -> str:
    """Hostname for comparisons: lower case, no trailing dot, IDNA-encoded like httpx does."""
    name = host.strip().lower()
    if name.endswith("."):
        name = name[:-1]
    if not name.isascii():
        name = idna.encode(name).decode("ascii")
    return name


class AllowList:
    """Operator-chosen internal targets that are reachable although not public.

    Entries are hostnames (matched exactly, case-insensitively, without a trailing dot; an
    allowed name is connected to whatever it resolves to) or IP networks/addresses in CIDR
    notation (an address in one of them passes the address check, whatever name led to it).
    """

    def __init__(self, entries: Iterable[str | Address | Network] = ()) -> None:
        names: set[str] = set()
        networks: list[Network] = []
        for entry in entries:
            if isinstance(entry, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
                networks.append(entry)
                continue
            if isinstance(entry, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
                networks.append(ipaddress.ip_network(entry))
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
                continue
            except ValueError:
                pass
            name = _normalise_name(entry)
            if not name or any(c in name for c in "/:@ []"):
                raise ValueError(f"allow-list entry is neither a hostname nor a network: {entry!r}")
            names.add(name)
        self.names: frozenset[str] = frozenset(names)
        self.networks: tuple[Network, ...] = tuple(networks)

    def allows_name(self, host: str) -> bool:
        return _normalise_name(host) in self.names

    def allows_address(self, ip: Address) -> bool:
        # ``in`` is False across IP versions, so ::ffff:127.0.0.1 is not opened by 127.0.0.0/8.
        return any(ip in net for net in self.networks)


# --------------------------------------------------------------------------------------------
# Resolution and the pinning network backend
# --------------------------------------------------------------------------------------------


async def system_resolver(host: str) -> list[str]:
    """The default resolver: the running event loop's ``getaddrinfo`` (A and AAAA records)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class PinningBackend(httpcore.AsyncNetworkBackend):
    """httpcore network backend that connects only to checked addresses.

    For every new connection httpcore calls :meth:`connect_tcp` with the URL's host.  We
    resolve it once (IP literals in any spelling are not resolved at all), refuse it unless every
    address is public or in the allow-list, and hand the checked IP literal to ``delegate``
    (``httpcore.AnyIOBackend`` unless a test substitutes one), trying the checked addresses in
    resolver order until one connects.  TLS is started afterwards by httpcore on the returned
    stream with the original hostname, so SNI and certificate checks use the name, not the IP.
    """

    def __init__(
        self,
        *,
        resolver: Resolver | None = None,
        allow: AllowList | None = None,
        delegate: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._resolver: Resolver = resolver if resolver is not None else system_resolver
        self._allow = allow if allow is not None else AllowList()
        self._delegate = delegate if delegate is not None else httpcore.AnyIOBackend()

    def address_allowed(self, ip: Address) -> bool:
        return is_public_address(ip) or self._allow.allows_address(ip)

    async def resolve(self, host: str, timeout: float | None = None) -> list[Address]:
        """The addresses ``host`` may be connected to, or :class:`AddressNotAllowed`.

        Calls the resolver at most once.
        """
        literal = parse_ip_literal(host)
        if literal is not None:
            candidates = [literal]
        elif self._allow.allows_name(host):
            # The operator vouched for the name itself, whatever it resolves to.
            return await self._lookup(host, timeout)
        elif _normalise_name(host) == "localhost" or _normalise_name(host).endswith(".localhost"):
            # RFC 6761: always loopback.  Refused without asking a resolver that might disagree.
            raise AddressNotAllowed(host)
        else:
            candidates = await self._lookup(host, timeout)
        # All of them, not just the first: otherwise [public, 10.0.0.1] passes here and a
        # fallback to the second address (ours below, or any retry logic) reaches 10.0.0.1.
        if not all(self.address_allowed(ip) for ip in candidates):
            raise AddressNotAllowed(host)
        return candidates

    async def _lookup(self, host: str, timeout: float | None) -> list[Address]:
        try:
            async with asyncio.timeout(timeout):
                answers = await self._resolver(host)
            addresses = [
                a if isinstance(a, (ipaddress.IPv4Address, ipaddress.IPv6Address)) else ipaddress.ip_address(a)
                for a in answers
            ]
        except (OSError, ValueError, TimeoutError):
            # gaierror (no such name), a resolver timeout or garbage all read the same as an
            # internal address: telling them apart would reveal which internal names exist.
            raise AddressNotAllowed(host) from None
        if not addresses:
            raise AddressNotAllowed(host)
        return list(dict.fromkeys(addresses))  # de-duplicated, resolver order kept

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        addresses = await self.resolve(host, timeout)
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for ip in addresses:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                break
            try:
                return await self._delegate.connect_tcp(
                    str(ip), port, timeout=remaining, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                # E.g. an AAAA answer on a host without IPv6 routing: try the next checked one.
                failure = exc
        if failure is not None:
            raise failure
        raise httpcore.ConnectTimeout("connect timed out")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AddressNotAllowed("unix-socket")  # never configured; refuse rather than delegate

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


# --------------------------------------------------------------------------------------------
# httpx transport over our own httpcore pool
# --------------------------------------------------------------------------------------------

# httpx 0.28's AsyncHTTPTransport has no parameter for the network backend; the usual trick of
# replacing its ``_pool`` attribute after construction depends on a private name.  Instead we
# build the httpcore.AsyncConnectionPool ourselves (public httpcore API, ``network_backend=``)
# and implement the one method of the public httpx.AsyncBaseTransport interface, converting
# requests/responses/exceptions the way AsyncHTTPTransport does.  No proxy support on purpose.

_EXCEPTIONS: Final[tuple[tuple[type[Exception], type[httpx.TransportError]], ...]] = (
    # Most specific first: the first match wins.
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.ProxyError, httpx.ProxyError),
)


@contextlib.contextmanager
def _httpcore_errors_as_httpx() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for core_type, httpx_type in _EXCEPTIONS:
            if isinstance(exc, core_type):
                raise httpx_type(str(exc)) from exc
        raise  # ours (AddressNotAllowed) and anything unexpected pass through unchanged


class _CoreResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        iterator = self._stream.__aiter__()
        while True:
            with _httpcore_errors_as_httpx():
                try:
                    part = await iterator.__anext__()
                except StopAsyncIteration:
                    return
            yield part

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()


_DEFAULT_LIMITS: Final = httpx.Limits(max_connections=20, max_keepalive_connections=20)


class PinnedTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 transport whose connections are all opened through ``backend``."""

    def __init__(
        self,
        backend: httpcore.AsyncNetworkBackend,
        *,
        ssl_context: ssl.SSLContext,
        limits: httpx.Limits = _DEFAULT_LIMITS,
    ) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            retries=0,  # a retry would be a second connect_tcp, hence a second resolution
            network_backend=backend,
        )

    @property
    def open_connections(self) -> int:
        """Connections the pool currently holds (connecting, active or idle)."""
        return len(self._pool.connections)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.AsyncByteStream):
            raise TypeError("PinnedTransport needs an async request body")
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpcore_errors_as_httpx():
            core_response = await self._pool.handle_async_request(core_request)
        if not isinstance(core_response.stream, AsyncIterable):
            raise TypeError("httpcore returned a synchronous response stream")
        return httpx.Response(
            status_code=core_response.status,
            headers=core_response.headers,
            stream=_CoreResponseStream(core_response.stream),
            extensions=core_response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


# --------------------------------------------------------------------------------------------
# Transfer-rate accounting
# --------------------------------------------------------------------------------------------


class _RateMeter:
    """Bytes received per sliding window, and the moment the rate would fall too low.

    Rule: once ``window`` seconds of body have passed, every interval ``(t - window, t]`` must
    contain at least ``min_rate * window`` bytes.  Instead of polling, :meth:`deadline` computes
    the earliest ``t`` at which that fails if nothing more arrives, and the body reader waits for
    the next chunk no longer than that.
    """

    def __init__(self, min_rate: float, window: float, start: float) -> None:
        self._need = min_rate * window
        self._window = window
        self._start = start
        # Chunks are summed into buckets of at most window/64 seconds, so a server sending
        # 1-byte segments cannot grow the deque (at most ~65 buckets per window).  A bucket keeps
        # the time of its first chunk: the rule then errs on the strict side, by < window/64.
        # (Re-stamping it with the latest chunk instead would let a bucket absorb an early burst
        # and carry it forward for ever.)
        self._merge = window / 64
        self._samples: collections.deque[tuple[float, int]] = collections.deque()

    def record(self, now: float, nbytes: int) -> None:
        if self._samples and now - self._samples[-1][0] < self._merge:
            stamp, previous = self._samples.pop()
            self._samples.append((stamp, previous + nbytes))
        else:
            self._samples.append((now, nbytes))
        while self._samples and self._samples[0][0] <= now - self._window:
            self._samples.popleft()  # can never be inside a future window again

    def deadline(self) -> float:
        """Loop time at which the rate check fails unless more bytes arrive; inf if disabled."""
        if self._need <= 0:
            return math.inf
        grace_end = self._start + self._window
        total = 0
        for stamp, nbytes in reversed(self._samples):
            total += nbytes
            if total >= self._need:
                # The window stays full enough until this sample slides out of it.
                return max(stamp + self._window, grace_end)
        return grace_end


# --------------------------------------------------------------------------------------------
# Responses and the fetcher
# --------------------------------------------------------------------------------------------


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):  # the chain is httpx error <- httpcore error <- OSError/SSLError
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        # httpcore's pool re-raises with ``from None``, which clears __cause__ but keeps
        # __context__ (the exception it was raised while handling).
        seen = seen.__cause__ or seen.__context__
    return False


def _translate(exc: httpx.HTTPError, url: str) -> FetchError:
    """An httpx error as one of ours.  Its text is not reused: it may hold the peer's IP."""
    if isinstance(exc, httpx.ConnectTimeout):
        return FetchTimeout(f"connecting to {url} timed out", url=url)
    if isinstance(exc, httpx.TimeoutException):
        return FetchTimeout(f"{url} did not answer in time ({type(exc).__name__})", url=url)
    if isinstance(exc, httpx.UnsupportedProtocol):
        return InvalidURL(f"unsupported URL {url}", url=url)
    if isinstance(exc, httpx.ConnectError):
        cause = "TLS handshake failed" if _caused_by(exc, ssl.SSLError) else "connection failed"
        return TransportError(f"could not connect to {url}: {cause}", url=url)
    return TransportError(f"fetching {url} failed: {type(exc).__name__}", url=url)


class SafeResponse:
    """The response of :meth:`SafeFetcher.stream`; valid only inside its ``async with``."""

    def __init__(
        self,
        response: httpx.Response,
        *,
        redirects: int,
        deadline: float,
        total_timeout: float,
        max_bytes: int | None,
        min_rate: float,
        rate_window: float,
    ) -> None:
        self._response = response
        self._deadline = deadline
        self._total_timeout = total_timeout
        self._max_bytes = max_bytes
        self._min_rate = min_rate
        self._rate_window = rate_window
        self._body_started = False
        #: Redacted URL of the final hop.
        self.url: str = redact(response.url)
        self.status_code: int = response.status_code
        self.headers: httpx.Headers = response.headers
        #: Number of redirects followed to get here.
        self.redirects: int = redirects
        #: Body bytes received so far.
        self.bytes_received: int = 0

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length")
        try:
            return int(value) if value is not None else None
        except ValueError:
            return None

    def raise_for_status(self) -> None:
        """:class:`BadStatus` unless the status is 2xx."""
        if not 200 <= self.status_code < 300:
            raise BadStatus(f"{self.url} answered HTTP {self.status_code}", url=self.url, status_code=self.status_code)

    async def body(self) -> AsyncIterator[bytes]:
        """The body as it arrives on the wire (not decompressed), chunk by chunk.

        Raises :class:`ResponseTooLarge` before yielding a chunk that would exceed
        ``max_bytes``, :class:`TransferTooSlow` when the rate rule fails, :class:`FetchTimeout`
        at the download's total deadline.  Time spent by the consumer between chunks counts
        towards the deadline and the rate (it is wall time for the whole download).
        """
        if self._body_started:
            raise RuntimeError("the body can be iterated only once")
        self._body_started = True
        loop = asyncio.get_running_loop()
        meter = _RateMeter(self._min_rate, self._rate_window, loop.time())
        # aiter_raw: bytes as transmitted (de-chunked, not decompressed).  It is an async
        # generator; typed as one so that we can close it when we stop early.
        chunks = typing.cast(AsyncGenerator[bytes, None], self._response.aiter_raw())
        try:
            while True:
                rate_deadline = meter.deadline()
                too_slow = rate_deadline < self._deadline
                timer = asyncio.timeout_at(rate_deadline if too_slow else self._deadline)
                try:
                    # The timeout covers exactly one read and never spans a ``yield``, so it can
                    # only ever cancel our own await, not the consumer's code.
                    async with timer:
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    if not timer.expired():
                        raise
                    if too_slow:
                        raise TransferTooSlow(
                            f"{self.url} sent less than {self._min_rate:g} bytes/s over {self._rate_window:g} s",
                            url=self.url,
                        ) from None
                    raise self._timeout_error() from None
                except httpx.HTTPError as exc:
                    raise _translate(exc, self.url) from None
                self.bytes_received += len(chunk)
                if self._max_bytes is not None and self.bytes_received > self._max_bytes:
                    raise ResponseTooLarge(
                        f"{self.url} sent more than the limit of {self._max_bytes} bytes", url=self.url
                    )
                meter.record(loop.time(), len(chunk))
                yield chunk
        finally:
            await chunks.aclose()

    async def read(self) -> bytes:
        """The whole body in memory, with the same limits as :meth:`body`."""
        return b"".join([chunk async for chunk in self.body()])

    def _timeout_error(self) -> FetchTimeout:
        return FetchTimeout(f"{self.url} exceeded the total time limit of {self._total_timeout:g} s", url=self.url)


@dataclasses.dataclass(frozen=True)
class DownloadResult:
    url: str  #: redacted final URL
    status_code: int
    size: int
    sha256: str
    content_type: str | None
    redirects: int


_UNSET: Any = object()


def _no_cookies() -> http.cookiejar.CookieJar:
    # One fetcher serves many tenants; a cookie one tenant's server sets must not be sent on
    # another tenant's download.  A policy with an empty domain allow-list accepts and returns none.
    return http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


class SafeFetcher:
    """Downloads of untrusted http(s) URLs; see the module docstring for the guarantees.

    :param allow: operator allow-list of hostnames and CIDR networks (see :class:`AllowList`).
    :param resolver: ``async (host) -> [ip, ...]``; default :func:`system_resolver`.
    :param total_timeout: seconds for a whole download: connect, redirects, headers and body.
    :param min_rate: minimum bytes/s averaged over ``rate_window`` seconds of body; 0 disables.
        The wait for the response head is bounded by ``total_timeout`` (and ``read_timeout``).
    :param rate_window: length of the sliding window in seconds (also the initial grace time).
    :param connect_timeout: per connection attempt, including the name resolution.
    :param read_timeout: httpx's per-read inactivity timeout (the rate rule covers trickling).
    :param max_bytes: default body size cap of :meth:`stream`; None for no cap.
    :param max_redirects: redirect hops followed before :class:`TooManyRedirects`.
    :param ssl_context: for https; default: certifi's CA bundle, no environment variables.
    :param delegate: the backend that makes the actual (pinned) connection; default
        ``httpcore.AnyIOBackend()``.  For tests; it is only ever given checked IP literals.
    """

    def __init__(
        self,
        *,
        allow: Iterable[str | Address | Network] = (),
        resolver: Resolver | None = None,
        total_timeout: float = 300.0,
        min_rate: float = 1024.0,
        rate_window: float = 10.0,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        max_bytes: int | None = 100 * 1024 * 1024,
        max_redirects: int = 5,
        max_connections: int = 20,
        ssl_context: ssl.SSLContext | None = None,
        user_agent: str = "pgcue-fetch/0.1",
        delegate: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        if total_timeout <= 0 or rate_window <= 0 or min_rate < 0 or max_redirects < 0:
            raise ValueError("total_timeout and rate_window must be > 0, min_rate and max_redirects >= 0")
        self._total_timeout = total_timeout
        self._min_rate = min_rate
        self._rate_window = rate_window
        self._max_bytes = max_bytes
        self._max_redirects = max_redirects
        self._backend = PinningBackend(resolver=resolver, allow=AllowList(allow), delegate=delegate)
        self._transport = PinnedTransport(
            self._backend,
            ssl_context=ssl_context if ssl_context is not None else httpx.create_ssl_context(trust_env=False),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )
        self._client = httpx.AsyncClient(
            transport=self._transport,
            # A proxy from HTTP(S)_PROXY/ALL_PROXY would do the resolving and connecting, past our
            # check.  httpx 0.28 reads those variables only when it builds its own transports
            # (transport=None), so with ours this is belt and braces: it keeps environment
            # proxies out even if a later httpx reads them for custom transports too.
            trust_env=False,
            follow_redirects=False,  # hops are followed by _send, one checked hop at a time
            timeout=httpx.Timeout(connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout),
            # identity: bytes on the wire are the bytes we count and cap (no decompression bomb).
            headers={"User-Agent": user_agent, "Accept-Encoding": "identity"},
            cookies=_no_cookies(),
            event_hooks={"response": [self._check_redirect_location]},
        )

    async def __aenter__(self) -> SafeFetcher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    @property
    def open_connections(self) -> int:
        """Connections currently held by the pool (for diagnostics and tests)."""
        return self._transport.open_connections

    @contextlib.asynccontextmanager
    async def stream(
        self, url: str, *, max_bytes: int | None = _UNSET, headers: dict[str, str] | None = None
    ) -> AsyncIterator[SafeResponse]:
        """GET ``url`` following redirects; yields the final response with its body unread.

        ``max_bytes`` overrides the fetcher's default cap (None: no cap).  A Content-Length
        over the cap is refused before the body is read.  The connection is closed (or returned
        to the pool if the body was read to the end) when the block exits, also on cancellation.
        """
        cap = self._max_bytes if max_bytes is _UNSET else max_bytes
        deadline = asyncio.get_running_loop().time() + self._total_timeout
        request = self._build_request(url, headers)
        response, redirects = await self._send(request, deadline)
        try:
            safe = SafeResponse(
                response,
                redirects=redirects,
                deadline=deadline,
                total_timeout=self._total_timeout,
                max_bytes=cap,
                min_rate=self._min_rate,
                rate_window=self._rate_window,
            )
            length = safe.content_length
            if cap is not None and length is not None and length > cap:
                raise ResponseTooLarge(f"{safe.url} announces {length} bytes, over the limit of {cap}", url=safe.url)
            yield safe
        finally:
            await response.aclose()

    async def download(
        self,
        url: str,
        dest: str | os.PathLike[str],
        *,
        max_bytes: int | None = _UNSET,
        headers: dict[str, str] | None = None,
    ) -> DownloadResult:
        """Stream ``url`` into the file ``dest``; :class:`BadStatus` unless the status is 2xx.

        Writes to a temporary file beside ``dest`` and renames it into place when complete, so
        ``dest`` never holds a partial body; the temporary file is removed on any error and on
        cancellation.  ``dest`` must be a regular file or not exist yet: the rename would
        otherwise replace a device, FIFO or directory entry (``/dev/null`` included).
        """
        target = os.fspath(dest)
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISREG(os.lstat(target).st_mode):
                raise ValueError(f"download destination exists and is not a regular file: {target!r}")
        async with self.stream(url, max_bytes=max_bytes, headers=headers) as response:
            response.raise_for_status()
            digest = hashlib.sha256()
            fd, partial = tempfile.mkstemp(dir=os.path.dirname(target) or ".", prefix=".safefetch-", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as out:
                    async for chunk in response.body():
                        # Blocking write on purpose: chunks are at most 64 KiB, and a thread would
                        # outlive a cancellation.
                        out.write(chunk)
                        digest.update(chunk)
                os.replace(partial, target)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(partial)
                raise
            return DownloadResult(
                url=response.url,
                status_code=response.status_code,
                size=response.bytes_received,
                sha256=digest.hexdigest(),
                content_type=response.headers.get("content-type"),
                redirects=response.redirects,
            )

    # -- internals ---------------------------------------------------------------------------

    def _build_request(self, url: str, headers: dict[str, str] | None) -> httpx.Request:
        if headers and any(name.lower() == "host" for name in headers):
            raise ValueError("the Host header is derived from the URL and cannot be overridden")
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            raise self._invalid_url_error(url, "invalid URL") from None
        self._check_target(parsed)
        return self._client.build_request("GET", parsed, headers=headers)

    def _check_target(self, url: httpx.URL) -> None:
        if url.scheme not in ("http", "https") or not url.raw_host:
            raise InvalidURL("only http and https URLs with a host can be fetched", url=redact(url))

    def _invalid_url_error(self, raw: str, what: str) -> FetchError:
        """Error for a URL httpx cannot parse.

        httpx rejects some IP spellings that the C library accepts (``0177.0.0.1``).  They can
        never be connected to, but if one denotes a refused address we raise the same
        :class:`AddressNotAllowed` as for every other spelling of it, so refusals look alike.
        """
        try:
            host = urllib.parse.urlsplit(raw).hostname
        except ValueError:
            host = None
        if host:
            ip = parse_ip_literal(host)
            if ip is not None and not self._backend.address_allowed(ip):
                return AddressNotAllowed(host)
        return InvalidURL(f"{what}: {redact(raw)}")

    async def _check_redirect_location(self, response: httpx.Response) -> None:
        # Runs inside client.send before httpx builds the redirect request, which would turn an
        # unparseable Location into a RemoteProtocolError quoting the Location verbatim.
        if response.has_redirect_location:
            location = response.headers["location"]
            try:
                httpx.URL(location)
            except httpx.InvalidURL:
                raise self._invalid_url_error(location, f"{redact(response.url)} redirects to an invalid URL") from None

    async def _send(self, request: httpx.Request, deadline: float) -> tuple[httpx.Response, int]:
        redirects = 0
        while True:
            hop = redact(request.url)
            self._check_target(request.url)
            timer = asyncio.timeout_at(deadline)
            try:
                async with timer:
                    response = await self._client.send(request, stream=True)
            except TimeoutError:
                if not timer.expired():
                    raise
                message = f"{hop} exceeded the total time limit of {self._total_timeout:g} s"
                raise FetchTimeout(message, url=hop) from None
            except httpx.HTTPError as exc:
                raise _translate(exc, hop) from None
            except httpx.InvalidURL:
                raise InvalidURL(f"invalid URL: {hop}", url=hop) from None
            if response.next_request is None:
                return response, redirects
            # A redirect: close it unread (its body could be endless) and follow it through the
            # same client, so the next hop's connection is checked by PinningBackend again.
            await response.aclose()
            redirects += 1
            if redirects > self._max_redirects:
                raise TooManyRedirects(f"{hop} redirected more than {self._max_redirects} times", url=hop)
            request = response.next_request
