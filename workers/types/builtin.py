"""Trivial built-in types for trying pgcue out, tests and benchmarks."""

from __future__ import annotations

import asyncio
from typing import Any

from pgcue.workers.runtime.context import JobContext
from pgcue.workers.runtime.registry import job_type


@job_type("echo", concurrency=50, lease_seconds=30, timeout_seconds=60, description="returns its payload")
async def echo(ctx: JobContext) -> Any:
    """Returns the payload as the result: a no-op job."""
    return ctx.payload


@job_type(
    "sleep",
    concurrency=10,
    lease_seconds=30,
    timeout_seconds=3600,
    description="sleeps payload.seconds in steps, reporting progress and honouring cancel",
)
async def sleep(ctx: JobContext) -> Any:
    """Sleeps `seconds` (default 1) in `steps` (default 10) steps, with a checkpoint and
    a progress report between steps."""
    payload = ctx.payload if isinstance(ctx.payload, dict) else {}
    seconds = float(payload.get("seconds", 1.0))
    steps = max(1, int(payload.get("steps", 10)))
    for step in range(steps):
        await ctx.checkpoint()
        await asyncio.sleep(seconds / steps)
        ctx.progress(100 * (step + 1) / steps, f"step {step + 1} of {steps}")
    return {"slept": seconds}
