"""Serving the API with uvicorn, and stopping it cleanly.

uvicorn, told to stop (SIGTERM, SIGINT), closes its listening socket, then waits for open
connections to finish before it runs the application's shutdown. An SSE stream never
finishes by itself, so without help every stop would wait out the whole grace period and
then cut the streams mid-air. `Server.shutdown` first ends every stream with its final
`event: shutdown` (pgcue.api.streams); the connections then close within moments,
and only a client that stopped reading is cut when the grace period
(PGCUE_SHUTDOWN_GRACE) runs out.
"""

from __future__ import annotations

import socket

import uvicorn
from litestar import Litestar

from pgcue.api.app import create_app
from pgcue.core.config import Settings
from pgcue.core.gc_tuning import settle_garbage_collector


class Server(uvicorn.Server):
    """uvicorn's server, ending the app's SSE streams before it waits for connections."""

    def __init__(self, config: uvicorn.Config, app: Litestar) -> None:
        super().__init__(config)
        self.litestar = app

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        settle_garbage_collector()  # once the app is up: see pgcue.core.gc_tuning

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        hub = self.litestar.state.get("hub")
        if hub is not None:
            hub.shutdown()
        await super().shutdown(sockets)


def make_server(settings: Settings, host: str, port: int) -> Server:
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace)),
    )
    return Server(config, app)


def run(settings: Settings, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT, then stop within the grace period."""
    make_server(settings, host, port).run()
