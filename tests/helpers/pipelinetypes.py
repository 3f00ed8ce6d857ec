"""Pipeline stage types and pipelines for tests/test_pipelines.py, loaded into real worker
processes with --import tests.helpers.pipelinetypes (the orchestrator reads the definitions, the
stage workers run the types). Handlers trace "<event> <job id> <attempt>" like
tests/jobtypes.py, so a test can tell which work ran and how often."""

from __future__ import annotations

import asyncio
from typing import Any

from pgcue.workers.runtime.context import JobContext, Result
from pgcue.workers.runtime.registry import job_type
from pgcue.workers.types.orchestrate.definitions import Stage, pipeline
from tests.helpers.jobtypes import trace


@job_type("p-work", concurrency=4, lease_seconds=2, retry_base_seconds=0.1)
async def work(ctx: JobContext) -> Any:
    """A stage's work: `steps` steps of `step` seconds, a checkpoint before each (default
    one quick step). Its result names its stage and iteration and echoes its feedback."""
    info = ctx.payload.get("pipeline", {})
    trace(f"work:{info.get('stage')}", ctx)
    await ctx.stage("working")  # written before it returns: a test can wait for it
    for _ in range(int(ctx.payload.get("steps", 1))):
        await ctx.checkpoint()
        await asyncio.sleep(float(ctx.payload.get("step", 0.01)))
    await ctx.checkpoint()
    return {
        "text": f"{info.get('stage')} draft {info.get('iteration')}",
        "iteration": info.get("iteration"),
        "feedbackSeen": info.get("feedback", []),
        "from": ctx.payload.get("from"),
    }


@job_type("p-review", concurrency=4, lease_seconds=2)
async def review(ctx: JobContext) -> Any:
    """A reviewer job: passes from iteration `review.passOn` on."""
    trace("review", ctx)
    iteration = int(ctx.payload["iteration"])
    pass_on = int(ctx.payload.get("review", {}).get("passOn", 1))
    if iteration >= pass_on:
        return {"passed": True, "feedback": "good enough"}
    return {"passed": False, "feedback": f"iteration {iteration}: make it punchier"}


@job_type("p-file", concurrency=4, lease_seconds=5)
async def file(ctx: JobContext) -> Any:
    """A stage that makes an artifact: a small text file naming its input."""
    async with ctx.artifacts.writing("notes.txt") as out:
        out.write_text(f"notes on {ctx.payload.get('from')}\n")
    return Result({"lines": 1}, ctx.artifacts.key("notes.txt"))


pipeline(
    "t-three",
    [
        Stage("outline", "p-work", inputs={"from": "inputs.topic"}),
        Stage("script", "p-work", inputs={"from": "outline.text"}),
        Stage("polish", "p-work", reviewer="check:not-empty", inputs={"from": "script.text"}),
    ],
)
pipeline("t-review", [Stage("draft", "p-work", reviewer="p-review", max_iterations=3, review={"passOn": 3})])
pipeline("t-strict", [Stage("draft", "p-work", reviewer="p-review", max_iterations=2, review={"passOn": 5})])
pipeline("t-approve", [Stage("draft", "p-work", approval=True), Stage("publish", "p-work")])
pipeline(
    "t-long",
    [
        Stage("first", "p-work"),
        Stage("second", "p-work", payload={"steps": 400, "step": 0.05}),
        Stage("third", "p-work"),
    ],
)
pipeline(
    "t-crash",
    [
        Stage("first", "p-work"),
        Stage("second", "p-work", payload={"steps": 30, "step": 0.05}),
        Stage("third", "p-work"),
    ],
)
pipeline(
    "t-artifact",
    [
        Stage("draft", "p-work", inputs={"from": "inputs.topic"}),
        Stage("notes", "p-file", inputs={"from": "draft.text"}),
    ],
)
# The screenshots' pipeline (tests/helpers/screenshots.py): reviewed, approved by a person,
# with an artifact at the end.
pipeline(
    "episode-demo",
    [
        Stage("outline", "p-work", inputs={"from": "inputs.topic"}, reviewer="check:not-empty"),
        Stage("script", "p-work", inputs={"from": "outline.text"}, approval=True),
        Stage("notes", "p-file", inputs={"from": "script.text"}),
    ],
)
