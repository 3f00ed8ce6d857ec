"""The operator view (admin keys): queues per job type (depth by state, oldest runnable
age, running against capacity, pause and limits), live workers, stuck jobs and recent
failures as the psql views show them, paused channels, and a chart of the last hour's
throughput and failures, all from one fleet snapshot shared by every open session
(pgcue.api.panel.snapshot) and read on indexes only.

Pausing and resuming go through the API (POST /api/types/{type}/pause, …), which any
admin program can call too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar import Request, Response, get
from litestar.datastructures import State

from pgcue.api.access import caller_of
from pgcue.api.panel.pages import PanelState, page, panel_problem
from pgcue.api.panel.snapshot import CHART_SECONDS, FleetSnapshot

CHART_W, CHART_H = 600, 120
MINUTES = int(CHART_SECONDS // 60)


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    completed_y: float
    completed_h: float
    failed_y: float
    failed_h: float
    cancelled_y: float
    cancelled_h: float
    label: str


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    peak: int
    completed: int
    failed: int
    cancelled: int
    width: int = CHART_W
    height: int = CHART_H

    @property
    def failure_pct(self) -> float:
        done = self.completed + self.failed
        return 100.0 * self.failed / done if done else 0.0


def chart(snapshot: FleetSnapshot) -> Chart:
    """Per minute of the last hour: jobs completed, failed and cancelled, as stacked bars."""
    now = snapshot.taken_at.astimezone(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=MINUTES - 1)
    buckets: dict[datetime, dict[str, int]] = {start + timedelta(minutes=i): {} for i in range(MINUTES)}
    for t in snapshot.throughput:
        minute = t.minute.astimezone(UTC)
        if minute in buckets:
            buckets[minute][t.state] = buckets[minute].get(t.state, 0) + t.jobs
    peak = max([sum(b.values()) for b in buckets.values()] + [1])
    width = CHART_W / MINUTES
    bars = []
    totals = {"completed": 0, "failed": 0, "cancelled": 0}
    for i, (minute, counts) in enumerate(sorted(buckets.items())):
        c, f, x = counts.get("completed", 0), counts.get("failed", 0), counts.get("cancelled", 0)
        for k, v in (("completed", c), ("failed", f), ("cancelled", x)):
            totals[k] += v
        scale = (CHART_H - 4) / peak
        ch, fh, xh = c * scale, f * scale, x * scale
        bars.append(
            Bar(
                x=i * width,
                width=max(width - 1, 1),
                completed_y=CHART_H - ch,
                completed_h=ch,
                failed_y=CHART_H - ch - fh,
                failed_h=fh,
                cancelled_y=CHART_H - ch - fh - xh,
                cancelled_h=xh,
                label=f"{minute:%H:%M} UTC: {c} completed, {f} failed, {x} cancelled",
            )
        )
    return Chart(bars, peak, totals["completed"], totals["failed"], totals["cancelled"])


async def _context(request: Request[Any, Any, Any], panel: PanelState) -> dict[str, Any]:
    snapshot = await panel.snapshots.fleet()
    paused = [c for c in snapshot.channels if c.paused]
    return {"snap": snapshot, "chart": chart(snapshot), "paused_channels": paused, "now": datetime.now(UTC)}


@get("/ui/operator", include_in_schema=False)
async def operator_page(request: Request[Any, Any, Any], state: State) -> Response[str]:
    """The fleet at a glance, for admin keys (anyone else: not found)."""
    if not caller_of(request).admin:
        return page(
            request,
            "error.html",
            status=404,
            title="Not found",
            heading="Not found",
            detail="The operator view is for admin keys.",
        )
    return page(request, "operator.html", title="Operator", **await _context(request, state.panel))


@get("/ui/fragments/operator", include_in_schema=False)
async def operator_fragment(request: Request[Any, Any, Any], state: State) -> Response[str]:
    if not caller_of(request).admin:
        raise panel_problem(404, "the operator view is for admin keys")
    return page(request, "fragments/operator.html", fragment=True, **await _context(request, state.panel))


route_handlers = [operator_page, operator_fragment]
