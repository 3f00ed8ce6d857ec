"""Job types for the client's tests (tests/http/test_client*.py), loaded into real worker
processes with --import tests.helpers.clienttypes."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from pgcue.workers.runtime.context import JobContext, Result
from pgcue.workers.runtime.registry import job_type


def pattern(size: int) -> bytes:
    """The bytes t-artifact writes: every offset's byte differs from its neighbours', so a
    range or a resumed download that lands one byte off shows."""
    return bytes((i * 7 + i // 251) % 256 for i in range(size))


@job_type("t-artifact", concurrency=2, lease_seconds=5)
async def artifact(ctx: JobContext) -> Any:
    """Writes `size` bytes of pattern() as its artifact, data.bin."""
    size = int(ctx.payload.get("size", 1000))
    async with ctx.artifacts.writing("data.bin") as temp:
        temp.write_bytes(pattern(size))
    return Result({"size": size}, path=ctx.artifacts.key("data.bin"))


@job_type("t-second-try", concurrency=2, lease_seconds=5)
async def second_try(ctx: JobContext) -> Any:
    """Fails the first time it runs for a job (whatever the attempt number: a person's
    retry starts attempts again), completes after: a job to retry by hand."""
    ctx.output("trying\n")
    marker = os.path.join(os.environ["PGCUE_TEST_TRACE_DIR"], f"{ctx.id}.tried")
    if not os.path.exists(marker):
        with open(marker, "w"):
            pass
        raise RuntimeError("first run fails")
    await asyncio.sleep(0.05)
    return {"ok": True}
