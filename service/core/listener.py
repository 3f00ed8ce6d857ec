"""The one LISTEN connection of a process, as a component (pgcue.core.components).

Used by the API (the event log grew: poll it), the worker (work to claim, a cancel) and
`pgcue jobs enqueue --wait`. It connects, LISTENs on its channels and calls `on_connect`
(a notification sent while it was not listening is lost, so the owner looks again), then
proves the connection every `listener_probe_interval` seconds with a NOTIFY round trip
through the database to itself: a connection can look open and hear nothing (a half-dead
TCP link, a proxy that dropped it), and without an answer within
`listener_probe_timeout` it is dropped and made again, with a backoff while the database
is unavailable.

A probe travels on the first channel as `probe:<token>`; every listener of that channel
hears it, and each ignores probes that are not its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg
import structlog

from pgcue.core import db, metrics
from pgcue.core.config import Settings

log = structlog.get_logger("pgcue.listener")

PROBE_PREFIX = "probe:"
Callback = Callable[[str, str], None]  # (channel, payload)


class Listener:
    def __init__(
        self,
        settings: Settings,
        notify: Callable[[str, str], Any],
        channels: Mapping[str, Callback],
        *,
        component: str,
        application_name: str,
        on_connect: Callable[[], None] | None = None,
    ) -> None:
        """`notify(channel, payload)` sends a NOTIFY (the queue façade's Fleet.notify);
        `channels` maps each channel to listen on to its callback; `component` labels the
        pgcue_listener_connected gauge (api | worker | cli)."""
        if not channels:
            raise ValueError("a listener needs at least one channel")
        self.name = f"listener:{component}"
        self.settings = settings
        self.notify = notify
        self.channels = dict(channels)
        self.component = component
        self.application_name = application_name
        self.on_connect = on_connect
        self.connected = asyncio.Event()
        self._token = f"{PROBE_PREFIX}{uuid.uuid4().hex[:12]}:"
        self._seq = itertools.count(1)
        self._probe: tuple[str, asyncio.Future[None]] | None = None

    def _dispatch(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        if payload.startswith(PROBE_PREFIX):
            probe = self._probe
            if probe is not None and payload == probe[0] and not probe[1].done():
                probe[1].set_result(None)
            return  # our probe, or another process's: never a callback's business
        callback = self.channels.get(channel)
        if callback is not None:
            callback(channel, payload)

    async def run(self) -> None:
        backoff = 0.05
        metrics.listener_connected(self.component, False)
        while True:
            conn: asyncpg.Connection | None = None
            lost = asyncio.Event()
            try:
                conn = await db.connect(self.settings, application_name=self.application_name)
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                for channel in self.channels:
                    await conn.add_listener(channel, self._dispatch)
                backoff = 0.05
                self.connected.set()
                metrics.listener_connected(self.component, True)
                if self.on_connect is not None:
                    self.on_connect()
                while not lost.is_set() and not conn.is_closed():
                    try:
                        await asyncio.wait_for(lost.wait(), self.settings.listener_probe_interval)
                    except TimeoutError:
                        if not await self._round_trip():
                            break
                if lost.is_set():
                    log.warning("listener connection lost; reconnecting", component=self.component)
            except Exception as exc:
                if not db.unavailable(exc):
                    raise
                log.warning(
                    "listener cannot connect; retrying",
                    component=self.component,
                    error=db.describe(exc),
                    retry_in=backoff,
                )
            finally:
                self.connected.clear()
                metrics.listener_connected(self.component, False)
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        conn.terminate()
            await asyncio.sleep(backoff)
            backoff = min(5.0, backoff * 2)

    async def _round_trip(self) -> bool:
        token = f"{self._token}{next(self._seq)}"
        heard: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._probe = (token, heard)
        first = next(iter(self.channels))
        try:
            await self.notify(first, token)
            await asyncio.wait_for(heard, self.settings.listener_probe_timeout)
            return True
        except TimeoutError:
            log.warning("listener heard nothing within its probe timeout; reconnecting", component=self.component)
            return False
        except Exception as exc:
            if not db.unavailable(exc):
                raise
            log.warning("listener probe failed; reconnecting", component=self.component, error=db.describe(exc))
            return False
        finally:
            self._probe = None
