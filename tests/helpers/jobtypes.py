"""Job types used by the tests, loaded into real worker processes with --import tests.helpers.jobtypes.

Handlers that need to leave a trace append one line to $PGCUE_TEST_TRACE_DIR/<pid>.log:
"<event> <job id> <attempt>", so a test can see which process ran what, and when.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import msgspec

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


def _is_open(gate: str) -> bool:
    """A gate is a file the test creates; one stat, cheap enough to poll from a handler."""
    return os.path.exists(gate)


@job_type("t-gated", concurrency=1, lease_seconds=2, max_attempts=1)
async def gated(ctx: JobContext) -> Any:
    """One attempt, a short lease, and a gate per attempt: writes a line tagged with its
    fence, waits (never checking for cancellation, as a handler stuck in a library call
    would) until the file <gates>/<fence> exists, writes another line and returns its
    fence. A test opens each attempt's gate and can tell one attempt's writes from
    another's (tests/processes/test_fencing.py)."""
    tag = f"fence {ctx.fence} pid {os.getpid()}"
    trace("start", ctx)
    ctx.progress(10, tag)
    ctx.output(f"{tag}: started\n")
    gate = os.path.join(ctx.payload["gates"], str(ctx.fence))
    while not _is_open(gate):
        await asyncio.sleep(0.02)
    trace("end", ctx)
    ctx.progress(90, tag)
    ctx.output(f"{tag}: finishing\n")
    return {"fence": ctx.fence, "pid": os.getpid()}


# Per process: how many jobs of each barrier group arrived, and the event that lets them go.
_barriers: dict[str, tuple[list[int], asyncio.Event]] = {}


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@job_type("t-outcomes", concurrency=50, lease_seconds=10, max_attempts=1)
async def outcomes(ctx: JobContext) -> Any:
    """Returns the outcome its payload's `kind` names, after every job of its `group`
    (`size` of them) has arrived in this process, so that a group's outcomes finish in the
    same loop turn and reach the completer as one batch (tests/processes/test_outcomes.py).
    Bounded: a group that never fills goes on after 30 s.

    ok: a result and an artifact key; nul-path: a resultPath with a NUL (the runtime's own
    check); surrogate-path: a resultPath with a lone surrogate, which no check here catches
    and the driver cannot encode; refused-json: JSON PostgreSQL's jsonb refuses (a number
    past numeric's range, passed through as msgspec.Raw as an upstream API's answer would
    be); deep: a result nested deeper than the encoder goes."""
    group, size = str(ctx.payload["group"]), int(ctx.payload["size"])
    arrived, everyone = _barriers.setdefault(group, ([0], asyncio.Event()))
    arrived[0] += 1
    if arrived[0] >= size:
        everyone.set()
    try:
        await asyncio.wait_for(everyone.wait(), 30)
    except TimeoutError:
        pass
    n, kind = ctx.payload.get("n"), ctx.payload.get("kind", "ok")
    if kind == "nul-path":
        return Result({"n": n}, path=f"{ctx.id}/a\x00b.txt")
    if kind == "surrogate-path":
        return Result({"n": n}, path=f"{ctx.id}/clip-\udc80.wav")
    if kind == "refused-json":
        return msgspec.Raw(b'{"n": 1e999999}')
    if kind == "deep":
        return {"n": n, "tree": _nested(5000)}
    return Result({"n": n}, path=f"{ctx.id}/ok.txt")


@job_type("t-exact-output", concurrency=1, lease_seconds=30)
async def exact_output(ctx: JobContext) -> Any:
    """Writes "0 1 2 ... " as fast as it can (a token every 5 ms) until the file `gate`
    exists, then "end <tokens>\n", and returns how many tokens it wrote: the test knows
    exactly what the job:output events must add up to."""
    gate = ctx.payload["gate"]
    i = 0
    while not _is_open(gate):
        ctx.output(f"{i} ")
        i += 1
        await asyncio.sleep(0.005)
    ctx.output(f"end {i}\n")
    ctx.log.info("exact output written", tokens=i)
    return {"tokens": i}


_ahead_at_once = 0


@job_type("t-ahead", concurrency=2, lease_seconds=10, retry_base_seconds=0.1)
async def ahead(ctx: JobContext) -> Any:
    """Reports progress if `report`, sleeps `sleep` seconds (0 by default), then waits
    for the file `gate` if given, and traces `atonce-<n>`, how many of its handlers run at once in this process, so a
    test sees the concurrency kept while jobs are claimed ahead of it
    (tests/processes/test_claim_ahead.py)."""
    global _ahead_at_once
    _ahead_at_once += 1
    try:
        trace(f"atonce-{_ahead_at_once}", ctx)
        if ctx.payload.get("report"):
            ctx.progress(1, "started")
        await asyncio.sleep(float(ctx.payload.get("sleep", 0)))
        gate = ctx.payload.get("gate")
        while gate and not _is_open(gate):
            await asyncio.sleep(0.02)
    finally:
        _ahead_at_once -= 1
    return None
