"""The `orchestrate` job type: drives one pipeline run through its stages (definitions.py
holds the pipelines, their stages and the built-in checks).

Each pass over the run is one short transaction that holds the run's row (so a cancel
waits for it and then sees everything it wrote) and makes one move: start a stage's work
as a child job, hand the work to a reviewer, record a verdict, finish a stage, or fail
the run. A move that has to wait (for a child job, or for a person) parks the run in the
same transaction: the run goes back to the queue without charging its attempt, and this
worker's slot is free at once. The child's completion, or a person's decision, wakes it.

Everything the orchestrator knows is in pgcue.pipeline_stages, so a run picked up after
a crash carries on from the recorded stage; a done stage is never run again, and a child
job is enqueued in the same transaction that records it, so it is never enqueued twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from pgcue.core.errors import InvalidJob, JobNotFound, UnknownJobType
from pgcue.core.models import Job, NewJob, StageRow
from pgcue.core.queue import Queue
from pgcue.core.states import StageState, WaitingFor
from pgcue.core.wire import iso_ms
from pgcue.workers.runtime.context import JobCancelled, JobContext, LeaseLost, PermanentError, Result, Suspended
from pgcue.workers.runtime.registry import job_type
from pgcue.workers.types.orchestrate.definitions import CHECK_PREFIX, Verdict, get_check, get_pipeline, resolve

# A parked run looks at its child again after this long even if no completion woke it (a
# child deleted by hand, say). Completions wake it at once; this is only a safety net.
RECHECK_SECONDS = 600.0


class _Continue:
    pass


class _Parked:
    pass


CONTINUE, PARKED = _Continue(), _Parked()


@dataclass(frozen=True)
class _Done:
    stages: list[StageRow]


@dataclass(frozen=True)
class _Failed:
    message: str


Move = _Continue | _Parked | _Done | _Failed


class OrchestratePayload(msgspec.Struct, kw_only=True):
    pipeline: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_-]{0,62}$", description="a registered pipeline")]
    inputs: dict[str, Any] = msgspec.field(default_factory=dict)


# A run parks between moves, so one orchestrator slot drives many runs; its lease is an
# hour, as the studio's orchestration ack timeout.
@job_type(
    "orchestrate",
    plan="paid",
    concurrency=1,
    memory_mb=4096,
    lease_seconds=3600,
    timeout_seconds=24 * 3600,
    payload=OrchestratePayload,
    description="multi-stage pipeline orchestration with quality gates",
)
async def orchestrate(ctx: JobContext) -> Any:
    """Advance a pipeline run: payload {"pipeline": name, "inputs": {...}}."""
    return await Orchestrator(ctx).run()


class Orchestrator:
    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self.queue: Queue = ctx.queue
        payload = ctx.payload if isinstance(ctx.payload, dict) else {}
        self.name = payload.get("pipeline")
        self.inputs = payload.get("inputs") or {}
        self.channel_id = ctx.job.channel_id
        self.owner_id = ctx.job.owner_id
        self.refused = ""

    async def run(self) -> Any:
        if not isinstance(self.name, str):
            raise PermanentError('an orchestrate job needs payload {"pipeline": "<name>", "inputs": {...}}')
        prepared = False
        while True:
            async with self.queue.transaction() as tx:
                cancel_requested = await tx.stages.lock_run(self.ctx.id, self.ctx.fence)
                if cancel_requested is None:
                    raise LeaseLost(f"pipeline run {self.ctx.id} is no longer held by this worker")
                if cancel_requested:
                    raise JobCancelled(f"pipeline run {self.ctx.id} cancelled")
                if not prepared:
                    await self._prepare(tx)
                    prepared = True
                move = await self._move(tx)
            if move is PARKED:
                raise Suspended()
            if isinstance(move, _Failed):
                raise PermanentError(move.message)
            if isinstance(move, _Done):
                return self._result(move.stages)

    async def _prepare(self, tx: Queue) -> None:
        """First pass of an attempt: copy the definition into the run's stages (once per
        run), or, after a retry, put its failed/cancelled/skipped stages back to pending."""
        if await tx.stages.of(self.ctx.id):
            if await tx.stages.reset_stopped(self.ctx.id):
                self.ctx.log.info("pipeline restarts from its stopped stage")
            return
        try:
            definition = get_pipeline(str(self.name))
        except KeyError as exc:
            raise PermanentError(str(exc.args[0])) from None
        await tx.stages.create(self.ctx.id, [(s.name, s.spec()) for s in definition.stages])

    async def _move(self, tx: Queue) -> Move:
        stages = await tx.stages.of(self.ctx.id)
        current = next((s for s in stages if s.state != StageState.DONE), None)
        if current is None:
            return _Done(stages)
        await self.ctx.checkpoint()  # a stage boundary: stop here if cancelled
        if current.state == StageState.PENDING:
            return await self._start_work(tx, current, stages)
        if current.state == StageState.RUNNING:
            work = await self._child(tx, current.child_id)
            if work is None or work.state != "completed":
                return await self._wait_or_fail(tx, current, work, "work")
            return await self._review(tx, current, work)
        if current.state == StageState.IN_REVIEW:
            review = await self._child(tx, current.review_child_id)
            if review is None or review.state != "completed":
                return await self._wait_or_fail(tx, current, review, "review")
            work = await self._child(tx, current.child_id)
            verdict = _verdict_of(review.result)
            if verdict is None or work is None:
                return await self._fail(tx, current, f"its reviewer {current.spec['reviewer']} returned no verdict")
            return await self._verdict(tx, current, verdict, work, by=str(current.spec["reviewer"]))
        if current.state == StageState.AWAITING_APPROVAL:
            return await self._park(tx, WaitingFor.APPROVAL)
        return await self._fail(tx, current, f"it is {current.state}")

    # --- moves -----------------------------------------------------------------------------

    async def _start_work(self, tx: Queue, stage: StageRow, stages: list[StageRow]) -> Move:
        spec = stage.spec
        iteration = stage.iteration + 1
        results = {s.name: s.result for s in stages if s.state == StageState.DONE}
        payload: dict[str, Any] = dict(spec.get("payload") or {})
        for target, path in (spec.get("inputs") or {}).items():
            payload[target] = resolve(path, self.inputs, results)
        payload["pipeline"] = {
            "run": str(self.ctx.id),
            "name": self.name,
            "stage": stage.name,
            "iteration": iteration,
            "feedback": [f.get("feedback", "") for f in stage.feedback if not f.get("passed")],
        }
        child = await self._enqueue(tx, stage, str(spec["type"]), payload)
        if child is None:
            return await self._fail(tx, stage, f"its job {spec['type']} was refused: {self.refused}")
        await tx.stages.move(stage, StageState.RUNNING, iteration=iteration, child_id=child)
        return await self._park(tx, WaitingFor.CHILDREN)

    async def _review(self, tx: Queue, stage: StageRow, work: Job) -> Move:
        reviewer = stage.spec.get("reviewer")
        if not reviewer:
            return await self._accept(tx, stage, work, None)
        if reviewer.startswith(CHECK_PREFIX):
            try:
                verdict = get_check(reviewer)(work.result, stage.spec.get("review") or {})
            except KeyError as exc:
                return await self._fail(tx, stage, str(exc.args[0]))
            return await self._verdict(tx, stage, verdict, work, by=reviewer)
        payload = {
            "stage": stage.name,
            "iteration": stage.iteration,
            "inputs": self.inputs,
            "review": stage.spec.get("review") or {},
            "work": {"jobId": str(work.id), "result": work.result, "resultPath": work.result_path},
            "pipeline": {"run": str(self.ctx.id), "name": self.name, "stage": stage.name},
        }
        child = await self._enqueue(tx, stage, reviewer, payload)
        if child is None:
            return await self._fail(tx, stage, f"its reviewer job {reviewer} was refused: {self.refused}")
        await tx.stages.move(stage, StageState.IN_REVIEW, review_child_id=child)
        return await self._park(tx, WaitingFor.CHILDREN)

    async def _verdict(self, tx: Queue, stage: StageRow, verdict: Verdict, work: Job, by: str) -> Move:
        entry = {
            "iteration": stage.iteration,
            "by": by,
            "passed": verdict.passed,
            "feedback": verdict.feedback,
            "at": iso_ms(datetime.now(UTC)),
        }
        if verdict.passed:
            return await self._accept(tx, stage, work, entry)
        if stage.iteration >= int(stage.spec.get("maxIterations", 1)):
            await tx.stages.move(stage, StageState.FAILED, feedback=entry)
            return _Failed(
                f"stage {stage.name} failed review {stage.iteration} time(s); last feedback: {verdict.feedback}"
            )
        await tx.stages.move(stage, StageState.PENDING, feedback=entry)  # the next iteration gets the feedback
        return CONTINUE

    async def _accept(self, tx: Queue, stage: StageRow, work: Job, entry: dict[str, Any] | None) -> Move:
        result = {} if work.result is None else work.result
        if stage.spec.get("approval"):
            await tx.stages.move(
                stage, StageState.AWAITING_APPROVAL, feedback=entry, result=result, result_path=work.result_path
            )
            return await self._park(tx, WaitingFor.APPROVAL)
        await tx.stages.move(stage, StageState.DONE, feedback=entry, result=result, result_path=work.result_path)
        return CONTINUE

    async def _wait_or_fail(self, tx: Queue, stage: StageRow, child: Job | None, what: str) -> Move:
        if child is not None and not child.finished:
            return await self._park(tx, WaitingFor.CHILDREN)
        if child is None:
            return await self._fail(tx, stage, f"its {what} job is gone")
        return await self._fail(
            tx, stage, f"its {what} job {child.id} ended {child.state}: {child.error_message or 'no error message'}"
        )

    async def _fail(self, tx: Queue, stage: StageRow, why: str) -> Move:
        await tx.stages.move(stage, StageState.FAILED)
        return _Failed(f"stage {stage.name} failed: {why}")

    async def _park(self, tx: Queue, waiting_for: WaitingFor) -> Move:
        recheck = None if waiting_for == WaitingFor.APPROVAL else RECHECK_SECONDS
        if not await tx.stages.park(self.ctx.id, self.ctx.fence, waiting_for, recheck):
            raise LeaseLost(f"pipeline run {self.ctx.id} could not be parked")
        return PARKED

    # --- helpers ---------------------------------------------------------------------------

    async def _enqueue(self, tx: Queue, stage: StageRow, job_type: str, payload: dict[str, Any]) -> uuid.UUID | None:
        new = NewJob(
            type=job_type,
            channel_id=self.channel_id,
            owner_id=self.owner_id,
            payload=payload,
            parent_id=self.ctx.id,
        )
        try:
            async with tx.transaction() as savepoint:  # a refused child fails the stage, not the transaction
                (child,) = await savepoint.enqueue_many([new])
        except (UnknownJobType, InvalidJob) as exc:
            self.refused = str(exc)
            return None
        return child

    async def _child(self, tx: Queue, job_id: uuid.UUID | None) -> Job | None:
        if job_id is None:
            return None
        try:
            return await tx.get(job_id)
        except JobNotFound:
            return None

    def _result(self, stages: list[StageRow]) -> Result:
        data = {
            "pipeline": self.name,
            "stages": {
                s.name: {"result": s.result, "resultPath": s.result_path, "iterations": s.iteration} for s in stages
            },
        }
        last = next((s.result_path for s in reversed(stages) if s.result_path), None)
        return Result(data, last)


def _verdict_of(result: Any) -> Verdict | None:
    """A reviewer job's result: {"passed": bool, "feedback": str} ("pass" is accepted too)."""
    if not isinstance(result, dict):
        return None
    passed = result.get("passed", result.get("pass"))
    if not isinstance(passed, bool):
        return None
    return Verdict(passed, str(result.get("feedback") or ""))
