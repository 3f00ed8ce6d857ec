"""Job types the benchmarks run (loaded into worker processes with --import bench.jobtypes)."""

from __future__ import annotations

import time
from typing import Any

from pgcue.workers.runtime.context import JobContext
from pgcue.workers.runtime.registry import job_type


# Tuned for throughput as the peers are: large batches mean fewer commits per job
# (measured on 20,000 jobs: 200/100 gives ~9.7k jobs/s, 1000/500 ~16-19k, beyond that flat).
@job_type("bench-noop", concurrency=1000, claim_batch=500, lease_seconds=60, timeout_seconds=60)
async def noop(ctx: JobContext) -> Any:
    """Does nothing: what is measured is the queue."""
    return None


@job_type("bench-latency", concurrency=20, lease_seconds=60, timeout_seconds=60)
async def latency(ctx: JobContext) -> Any:
    """Records when the handler started (wall clock of this machine)."""
    return {"t": time.time()}


@job_type("bench-plain", lease_seconds=60, timeout_seconds=60)
async def plain(ctx: JobContext) -> Any:
    """Does nothing, with pgcue's defaults for everything but what a run sets (its
    concurrency): the drain "at defaults"."""
    return None
