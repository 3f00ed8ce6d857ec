"""Job types used by the tests, loaded into real worker processes with --import tests.helpers.jobtypes.

Handlers that need to leave a trace append one line to $PGCUE_TEST_TRACE_DIR/<pid>.log:
"<event> <job id> <attempt>", so a test can see which process ran what, and when.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from pgcue.workers.runtime.context import JobContext, PermanentError, Result
from pgcue.workers.runtime.registry import job_type


def trace(event: str, ctx: JobContext) -> None:
    folder = os.environ.get("PGCUE_TEST_TRACE_DIR")
    if folder:
        with open(os.path.join(folder, f"{os.getpid()}.log"), "a") as f:
            f.write(f"{event} {ctx.id} {ctx.attempt}\n")


@job_type("t-count", concurrency=20, lease_seconds=5)
async def count(ctx: JobContext) -> Any:
    """Records its start and end, with a yield between, so overlapping runs would show."""
    trace("start", ctx)
    await asyncio.sleep(0)
    trace("end", ctx)
    return {"n": ctx.payload.get("n")}


@job_type("t-flaky", concurrency=5, lease_seconds=5, max_attempts=3, retry_base_seconds=0.2)
async def flaky(ctx: JobContext) -> Any:
    """Fails until attempt `succeedOn` (never, if absent)."""
    trace("start", ctx)
    succeed_on = ctx.payload.get("succeedOn")
    if succeed_on is None or ctx.attempt < succeed_on:
        raise RuntimeError(f"flaky failure on attempt {ctx.attempt}")
    return {"attempt": ctx.attempt}


@job_type("t-permanent", concurrency=5, lease_seconds=5)
async def permanent(ctx: JobContext) -> Any:
    trace("start", ctx)
    raise PermanentError("the input can never work")


@job_type("t-slow", concurrency=5, lease_seconds=2, retry_base_seconds=0.1)
async def slow(ctx: JobContext) -> Any:
    """Runs `steps` steps of `step` seconds with a checkpoint between; traces each start.
    With `ignoreCancel` it never checks (to test give-back on shutdown)."""
    trace("start", ctx)
    steps = int(ctx.payload.get("steps", 50))
    for i in range(steps):
        if not ctx.payload.get("ignoreCancel"):
            await ctx.checkpoint()
        if i == 0:
            trace("running", ctx)
        ctx.progress(100 * i / steps, f"step {i}")
        ctx.output(f"line {i}\n")
        await asyncio.sleep(float(ctx.payload.get("step", 0.1)))
    trace("end", ctx)
    return Result({"steps": steps}, path=f"/artifacts/{ctx.id}.txt")


@job_type("t-stages", concurrency=2, lease_seconds=5)
async def stages(ctx: JobContext) -> Any:
    for name in ("draft", "review", "publish"):
        await ctx.checkpoint()
        await ctx.stage(name, note=f"entering {name}")
        ctx.output(f"{name} done\n")
    ctx.progress(100, "all stages done")
    return {"stages": 3}


@job_type("t-timeout", concurrency=2, lease_seconds=5, timeout_seconds=1, max_attempts=2, retry_base_seconds=0.1)
async def too_slow(ctx: JobContext) -> Any:
    """Takes longer than its one-second timeout, every time."""
    trace("start", ctx)
    await asyncio.sleep(30)
    return None


@job_type("t-chatty", concurrency=2, lease_seconds=5)
async def chatty(ctx: JobContext) -> Any:
    """Reports progress and output `n` times as fast as it can, in `rounds` bursts."""
    n = int(ctx.payload.get("reports", 10_000))
    rounds = int(ctx.payload.get("rounds", 10))
    for r in range(rounds):
        for i in range(n // rounds):
            ctx.progress(100 * (r * (n // rounds) + i) / n)
            ctx.output(f"token {i} ")
        await asyncio.sleep(0.02)
    return {"reports": n}


async def _nap(ctx: JobContext) -> Any:
    trace("start", ctx)
    await asyncio.sleep(float(ctx.payload.get("sleep", 0.15)))
    trace("end", ctx)
    return None


job_type("t-limited", concurrency=5, lease_seconds=5, global_concurrency=2)(_nap)
job_type("t-chanlimited", concurrency=5, lease_seconds=5, channel_concurrency=1)(_nap)
job_type("t-rated", concurrency=5, lease_seconds=5, rate_limit=4, rate_period_seconds=1)(_nap)


@job_type("t-quick", concurrency=20, lease_seconds=2, max_attempts=20, retry_base_seconds=0.05)
async def quick(ctx: JobContext) -> Any:
    """A short job with a short lease (tests/test_faults_api.py kills workers under it):
    a checkpoint, a few milliseconds of work, done. Many attempts, so repeated kills only
    delay it."""
    trace("start", ctx)
    await ctx.checkpoint()
    await asyncio.sleep(float(ctx.payload.get("sleep", 0.01)))
    trace("end", ctx)
    return {"n": ctx.payload.get("n")}
