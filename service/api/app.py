"""Litestar application factory: the jobs API, its live events, health and OpenAPI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from litestar import Litestar, get
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Components, SecurityScheme
from litestar.response import Response
from pgcue.api.auth import KeyCache
from pgcue.api.files import route_handlers as artifact_routes
from pgcue.api.jobs import JobsController, TypeCache
from pgcue.api.metrics import MetricsPlugin
from pgcue.api.problems import PROBLEM_JSON, exception_handlers
from pgcue.api.schemas import Health
from pgcue.api.stages import PipelinesController
from pgcue.api.streams import EventsController
from pgcue.core import db, migrate
from pgcue.core.batching import EnqueueBatcher
from pgcue.core.config import Settings, from_env
from pgcue.core.events import EventHub
from pgcue.core.queue import Queue

MAX_BODY_BYTES = 1024 * 1024  # 413 above this: payloads are inputs, not files


@dataclass(frozen=True)
class ApiOptions:
    keepalive: float = 15.0  # seconds between SSE keep-alive comments
    sse_backlog: int = 1000  # events a subscriber may have pending before it is cut off
    max_body_bytes: int = MAX_BODY_BYTES
    pool_size: int = 10


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
        row = await queue.sql.fetchrow(queue.pool, "schema_version")
    except Exception as exc:  # any failure means not ready
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Response(Health(status="unavailable", detail=first), status_code=503)
    have, want = int(row["version"]) if row else 0, migrate.latest_version()
    if have != want:
        detail = f"schema is at migration {have}, this code expects {want} (run `pgcue migrate`)"
        return Response(Health(status="unavailable", detail=detail), status_code=503)
    return Response(Health(status="ready"))


def create_app(settings: Settings | None = None, options: ApiOptions | None = None) -> Litestar:
    settings = settings or from_env()
    options = options or ApiOptions()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = await db.create_pool(settings, min_size=1, max_size=options.pool_size, application_name="pgcue-api")
        queue = Queue(pool, settings.schema)
        hub = EventHub(settings, pool)
        app.state.queue = queue
        app.state.settings = settings
        app.state.options = options
        app.state.types = TypeCache(queue)
        app.state.enqueuer = EnqueueBatcher(queue)
        app.state.key_cache = KeyCache()
        app.state.hub = hub
        await hub.start()
        try:
            yield
        finally:
            await hub.close()
            try:
                await asyncio.wait_for(pool.close(), 5.0)
            except (TimeoutError, asyncio.CancelledError):
                pool.terminate()

    return Litestar(
        route_handlers=[healthz, readyz, JobsController, PipelinesController, EventsController, *artifact_routes],
        lifespan=[lifespan],
        exception_handlers=exception_handlers,
        plugins=[MetricsPlugin()],  # GET /metrics and per-route request metrics (issue 4)
        request_max_body_size=options.max_body_bytes,
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
