"""Litestar application factory: the jobs API, its live events, the Jobs panel (pgcue.api.panel),
health, metrics and OpenAPI.

Every route is private (pgcue.api.auth) unless its path is in auth.PUBLIC.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from litestar import Litestar, get
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Components, SecurityScheme
from litestar.response import Response

from pgcue.api.auth import KeyCache, authentication
from pgcue.api.bodies import ApiRequest
from pgcue.api.files import route_handlers as file_routes
from pgcue.api.fleet import FleetController
from pgcue.api.hub import EventHub
from pgcue.api.jobs import JobsController
from pgcue.api.metrics import MetricsPlugin
from pgcue.api.panel import PanelState
from pgcue.api.panel import route_handlers as panel_routes
from pgcue.api.problems import PROBLEM_JSON, exception_handlers
from pgcue.api.stages import StagesController
from pgcue.api.streams import EventsController
from pgcue.core import db, migrate
from pgcue.core.batching import EnqueueBatcher
from pgcue.core.config import Settings, from_env
from pgcue.core.queue import Queue
from pgcue.core.wire import Health

log = structlog.get_logger("pgcue.api")


@get("/healthz", sync_to_thread=False, tags=["health"], summary="The process is alive")
def healthz() -> Health:
    return Health(status="ok")


@get(
    "/readyz",
    tags=["health"],
    summary="The database answers and the schema is the one this code expects",
    responses={
        503: ResponseSpec(data_container=Health, description="Not ready: database unreachable or schema not current")
    },
)
async def readyz(state: State) -> Response[Health]:
    queue: Queue = state.queue
    try:
        have = await queue.schema_version()
    except Exception as exc:  # any failure means not ready
        return Response(Health(status="unavailable", detail=db.describe(exc)), status_code=503)
    want = migrate.latest_version()
    if have != want:
        detail = f"schema is at migration {have}, this code expects {want} (run `pgcue migrate`)"
        return Response(Health(status="unavailable", detail=detail), status_code=503)
    return Response(Health(status="ready"))


class _IncompleteResponses(logging.Filter):
    """uvicorn logs an error when an app returns before finishing a response; an SSE stream
    ended because its client stopped reading does exactly that, on purpose
    (pgcue.api.streams), and counts it in pgcue_sse_stalled_clients_total instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "ASGI callable returned without completing response" not in record.getMessage()


def _exit_on_fatal(name: str, exc: BaseException) -> None:
    """A component of the API keeps failing: stop the process (SIGTERM: streams end with
    their resumable shutdown event), so that its supervisor starts a fresh one."""
    os.kill(os.getpid(), signal.SIGTERM)


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or from_env()
    logging.getLogger("uvicorn.error").addFilter(_IncompleteResponses())

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = await db.create_pool(settings, min_size=1, max_size=settings.api_pool_size, application_name="pgcue-api")
        queue = Queue(pool, settings.schema)
        hub = EventHub(settings, queue, on_fatal=_exit_on_fatal)
        app.state.queue = queue
        app.state.settings = settings
        app.state.enqueuer = EnqueueBatcher(queue)
        app.state.key_cache = KeyCache()
        app.state.session_cache = KeyCache()
        app.state.panel = PanelState(queue, settings)
        app.state.hub = hub
        await hub.start()
        # What it holds (docs/deploy.md): a pool for requests and enqueue batches, and one
        # LISTEN session for every live stream of the process.
        log.info("api started", connections={"pool": f"1-{settings.api_pool_size}", "listen": 1})
        try:
            yield
        finally:
            await hub.close()
            try:
                await asyncio.wait_for(pool.close(), 5.0)
            except (TimeoutError, asyncio.CancelledError):
                pool.terminate()

    return Litestar(
        route_handlers=[
            healthz,
            readyz,
            JobsController,
            StagesController,
            EventsController,
            FleetController,
            *file_routes,
            *panel_routes,
        ],
        lifespan=[lifespan],
        middleware=[authentication],
        request_class=ApiRequest,  # bodies decoded against their type: errors name the field
        exception_handlers=exception_handlers,
        plugins=[MetricsPlugin()],  # GET /metrics and per-route request metrics
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="pgcue",
            version="0.1.0",
            description="A PostgreSQL-native job queue: jobs, channels, live events. Errors are "
            f"{PROBLEM_JSON} (RFC 9457).",
            path="/schema",
            components=Components(
                security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer", description="pgcue API key")}
            ),
        ),
    )
