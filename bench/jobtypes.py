"""Job types the benchmarks run (loaded into worker processes with --import bench.jobtypes)."""

from __future__ import annotations

import time
from typing import Any

from workers.context import JobContext
from workers.registry import job_type


@job_type("bench-noop", concurrency=200, lease_seconds=60, timeout_seconds=60)
async def noop(ctx: JobContext) -> Any:
    """Does nothing: what is measured is the queue."""
    return None


@job_type("bench-latency", concurrency=20, lease_seconds=60, timeout_seconds=60)
async def latency(ctx: JobContext) -> Any:
    """Records when the handler started (wall clock of this machine)."""
    return {"t": time.time()}
