"""The Jobs panel: a server-rendered web UI served by the API itself (GET /ui), for a
studio's users (their channels' jobs, live) and its operators (the fleet).

Server-rendered HTML (Jinja2 templates, autoescaped) and one small script (static/panel.js,
vanilla JavaScript with EventSource, no framework, nothing to build), shipped in the
package: it works offline and `make run` serves it as is. docs/panel.md tells how it
works: routes, sign-in and CSRF, live updates and their resume, and why its pages stay
fast on a big table.

Every route is private (pgcue.api.auth) but the sign-in page and the static files.
"""

from __future__ import annotations

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router

from pgcue.api.panel import operator, session, views
from pgcue.api.panel.pages import PAGE_EXCEPTION_HANDLERS, PanelState
from pgcue.api.panel.render import STATIC

_pages = Router(
    path="/",
    route_handlers=[*views.route_handlers, *operator.route_handlers, *session.route_handlers],
    exception_handlers=PAGE_EXCEPTION_HANDLERS,
    include_in_schema=False,
)
_static = create_static_files_router(
    path="/ui/static",
    directories=[STATIC],
    # Each file's URL carries its hash (render.asset_versions): a cached copy is never stale.
    cache_control=CacheControlHeader(public=True, max_age=365 * 86_400, immutable=True),
    include_in_schema=False,
    send_as_attachment=False,
)

route_handlers = [_pages, _static]

__all__ = ["PanelState", "route_handlers"]
