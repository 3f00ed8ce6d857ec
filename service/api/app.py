"""Litestar application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, get
from litestar.datastructures import State
from litestar.response import Response

from service import db
from service.config import Settings, from_env
from service.queue import Queue


@get("/healthz", sync_to_thread=False)
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@get("/readyz")
async def readyz(state: State) -> Response[dict[str, str]]:
    """The database answers and the schema is the one this code expects."""
    queue: Queue = state.queue
    try:
        await queue.sql.fetch(queue.pool, "ping")
    except Exception as exc:  # any failure means not ready
        return Response({"status": "unavailable", "detail": str(exc)}, status_code=503)
    return {"status": "ready"}  # type: ignore[return-value]


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or from_env()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = await db.create_pool(settings, min_size=1, max_size=10, application_name="pgcue-api")
        app.state.queue = Queue(pool, settings.schema)
        app.state.settings = settings
        try:
            yield
        finally:
            await pool.close()

    return Litestar(route_handlers=[healthz, readyz], lifespan=[lifespan])
