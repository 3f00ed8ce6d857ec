"""What a handler sees while it runs a job."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import msgspec
import structlog
from pgcue.core.models import ClaimedJob

_encode = msgspec.json.Encoder().encode
OUTPUT_CHUNK = 4000  # characters per job:output event; longer output is split


class JobCancelled(Exception):
    """Raised by checkpoint() when the job's cancellation was requested."""


class LeaseLost(Exception):
    """Raised by checkpoint() when this worker no longer holds the job (its lease expired
    and the job was rescued): nothing it writes about the job will be recorded."""


class Suspended(Exception):
    """Raised by a handler that put its own job back in the queue, in the transaction that
    recorded why (a pipeline run waiting for its child job or for a person): the worker
    records nothing more about this attempt."""


class PermanentError(Exception):
    """Raise it from a handler for a failure no retry can fix: the job fails at once."""


class Result(msgspec.Struct):
    """A handler's return value when it has an artifact: `path` becomes resultPath."""

    data: Any = None
    path: str | None = None


class JobContext:
    """A running job, its payload, and the handler's ways to report and to stop.

    progress() and output() only buffer: the worker writes what was buffered for all its
    jobs in one statement every PGCUE_REPORT_INTERVAL, so a chatty handler costs one write
    per interval, not one per call. stage() is written before it returns.
    """

    def __init__(self, job: ClaimedJob, reporter: Any, log: structlog.typing.FilteringBoundLogger) -> None:
        self.job = job
        self.log = log
        self._reporter = reporter
        self._cancel = asyncio.Event()
        self.lost = False
        if job.cancel_requested:
            self._cancel.set()
        # Buffered since the last write:
        self.pending_progress: int | None = None
        self.pending_message: str | None = None
        self.pending_stage: str | None = None
        self.pending_events: list[tuple[str, bytes]] = []
        self._output: list[str] = []

    @property
    def id(self) -> uuid.UUID:
        return self.job.id

    @property
    def payload(self) -> Any:
        return self.job.payload

    @property
    def attempt(self) -> int:
        return self.job.attempts

    @property
    def queue(self) -> Any:
        """The worker's Queue, for handlers that enqueue jobs of their own (pipelines)."""
        return self._reporter.worker.queue

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    async def wait_cancelled(self) -> None:
        """Returns when cancellation is requested (to stop a subprocess, say)."""
        await self._cancel.wait()

    def request_cancel(self) -> None:
        self._cancel.set()

    def mark_lost(self) -> None:
        self.lost = True
        self._cancel.set()

    # --- reporting -------------------------------------------------------------------

    def progress(self, percent: float, message: str | None = None) -> None:
        """Report progress, 0–100 (clamped), with an optional message."""
        self.pending_progress = max(0, min(100, int(percent)))
        if message is not None:
            self.pending_message = message.replace("\x00", "")[:500]
        self._reporter.touch(self)

    def output(self, text: str) -> None:
        """Append streamed output (a model's tokens, a tool's log lines)."""
        if text:
            self._output.append(text.replace("\x00", ""))
            self._reporter.touch(self)

    async def stage(self, name: str, **info: Any) -> None:
        """Enter stage `name`; recorded (with `stage:updated`) before this returns."""
        self.pending_stage = name
        self.pending_events.append(("stage:updated", _encode({"stage": name, **info})))
        self._reporter.touch(self)  # flush() writes only the jobs touched since the last write
        await self._reporter.flush()

    async def checkpoint(self) -> None:
        """A safe point to stop: raises JobCancelled if cancellation was requested, or
        LeaseLost if this worker no longer holds the job."""
        if self.lost:
            raise LeaseLost(f"job {self.id} attempt {self.attempt} is no longer held by this worker")
        if self._cancel.is_set():
            raise JobCancelled(f"job {self.id} cancelled")
        await asyncio.sleep(0)

    # --- for the reporter --------------------------------------------------------------

    def has_pending(self) -> bool:
        return bool(self.pending_events or self._output or self.pending_progress is not None or self.pending_stage)

    def take_pending(self) -> tuple[int | None, str | None, str | None, tuple[tuple[str, bytes], ...]]:
        events = list(self.pending_events)
        if self._output:
            text = "".join(self._output)
            events.extend(
                ("job:output", _encode({"text": text[i : i + OUTPUT_CHUNK]})) for i in range(0, len(text), OUTPUT_CHUNK)
            )
        if self.pending_progress is not None:
            events.append(
                ("job:progress", _encode({"progress": self.pending_progress, "message": self.pending_message}))
            )
        taken = (self.pending_progress, self.pending_message, self.pending_stage, tuple(events))
        self.pending_progress = self.pending_message = self.pending_stage = None
        self.pending_events = []
        self._output = []
        return taken
