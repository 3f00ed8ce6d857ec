"""What the panel's templates show, made once in Python: a job as a row (its chip, its
progress, its attempts, its actions, its artifact's preview), a pipeline run's stages, an
event as one line of history, and the small formats (times, durations, counts).

Templates (templates/*.html) are Jinja2 with autoescaping on: every value a job carries
(payloads, results, errors, output) is text to them, never markup.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from pgcue.core.artifacts import content_type
from pgcue.core.models import Job, JobEvent, StageRow
from pgcue.core.states import STATE_ALIASES, EventKind, JobState, StageState, WaitingFor
from pgcue.core.wire import iso_ms

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
MAX_PRETTY = 20_000  # characters of a payload or result shown (the API has the rest)

# What each state is called where a product names it otherwise (seed 001: submitted,
# succeeded), shown beside the chip's own name.
ALSO_CALLED = {state.value: alias for alias, state in STATE_ALIASES.items()}
WAITING_TEXT = {
    WaitingFor.CHILDREN.value: "waiting for its stage",
    WaitingFor.APPROVAL.value: "waiting for approval",
    WaitingFor.PROVIDER.value: "waiting for the provider",
}


def iso(value: datetime | None) -> str:
    return iso_ms(value) or ""


def clock(value: datetime | None) -> str:
    """A time as a person reads it: 2024-03-15 10:30:05 UTC."""
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(ms: float | None) -> str:
    """1.2 s, 3 min 4 s, 2 h 5 min."""
    if ms is None:
        return "—"
    seconds = ms / 1000
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    return f"{hours // 24} d {hours % 24} h"


def clock_text(text: str | None) -> str:
    """An ISO 8601 time from a job's JSON (an error's, a review's) as clock() writes times."""
    if not text:
        return "—"
    try:
        return clock(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return text


def limits(queue: Any) -> str:
    """A type's fleet-wide limits in force: fleet 4 · per channel 2 · 10 per 60 s."""
    parts = []
    if queue.global_concurrency:
        parts.append(f"fleet {queue.global_concurrency}")
    if queue.channel_concurrency:
        parts.append(f"per channel {queue.channel_concurrency}")
    if queue.rate_limit:
        parts.append(f"{queue.rate_limit} per {queue.rate_period_seconds} s")
    return " · ".join(parts) or "—"


def number(n: int, capped: bool = False) -> str:
    return f"{n:,}+" if capped else f"{n:,}"


def pretty(value: Any) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)
    return text if len(text) <= MAX_PRETTY else text[:MAX_PRETTY] + "\n… (the API has the rest)"


def artifact_kind(name: str | None, result: Any = None) -> str | None:
    """How the panel previews a job's artifact: audio, video, image, or a file to download."""
    if not name:
        return None
    media = content_type(name)
    if isinstance(result, dict) and isinstance(result.get("contentType"), str):
        media = result["contentType"]
    for kind in ("audio", "video", "image"):
        if media.startswith(kind + "/") and not media.startswith("image/svg"):
            return kind
    return "file"


@dataclass
class Chip:
    css: str  # the state's class: queued, running, completed, failed, cancelled, waiting, cancelling
    label: str
    title: str


def chip_of(job: Job) -> Chip:
    state = job.state.value
    also = ALSO_CALLED.get(state)
    title = f"{state}" + (f" (what some products call {also})" if also else "")
    if job.state == JobState.QUEUED and job.waiting_for:
        text = WAITING_TEXT.get(job.waiting_for, f"waiting for {job.waiting_for}")
        return Chip("waiting", text, f"queued: {text}")
    if job.state == JobState.RUNNING and job.cancel_requested:
        return Chip("cancelling", "cancelling…", "cancel requested: it stops at its next checkpoint")
    return Chip(state, state, title)


def stage_chip(state: str) -> Chip:
    css = {
        StageState.DONE.value: "completed",
        StageState.RUNNING.value: "running",
        StageState.IN_REVIEW.value: "running",
        StageState.AWAITING_APPROVAL.value: "waiting",
        StageState.FAILED.value: "failed",
        StageState.CANCELLED.value: "cancelled",
    }.get(state, "queued")
    return Chip(css, state.replace("_", " "), f"stage {state}")


@dataclass
class StageView:
    run_id: str
    position: int
    name: str
    state: str
    chip: Chip
    iteration: int
    max_iterations: int
    reviewer: str | None
    approval: bool
    feedback: list[dict[str, Any]]
    child_id: str | None
    review_child_id: str | None
    awaiting: bool

    @property
    def iterations(self) -> str:
        return f"{self.iteration} of {self.max_iterations}" if self.max_iterations > 1 else str(self.iteration)


def stage_view(stage: StageRow) -> StageView:
    wire = stage.to_wire()
    return StageView(
        run_id=str(stage.job_id),
        position=stage.position,
        name=stage.name,
        state=stage.state,
        chip=stage_chip(stage.state),
        iteration=stage.iteration,
        max_iterations=wire.max_iterations,
        reviewer=wire.reviewer,
        approval=wire.approval,
        feedback=list(wire.feedback),
        child_id=wire.child_id,
        review_child_id=wire.review_child_id,
        awaiting=stage.state == StageState.AWAITING_APPROVAL,
    )


@dataclass
class JobView:
    job: Job
    chip: Chip
    stages: list[StageView] = field(default_factory=list)
    key: Any = None  # what the row shows depends on (RowCache)

    @property
    def id(self) -> str:
        return str(self.job.id)

    @property
    def short(self) -> str:
        """The id's last 8 digits: its first ones are a time (ids are UUIDv7), the same for
        jobs enqueued together."""
        return self.id[-8:]

    @property
    def is_run(self) -> bool:
        return bool(self.stages) or self.job.type == "orchestrate"

    @property
    def attempts(self) -> str:
        """`2 of 3`; a job parked mid-attempt (a run between its moves, a poll of a
        provider) is on the attempt its claim will go on with."""
        n = self.job.attempts
        if self.job.state == JobState.QUEUED and self.job.waiting_for and self.job.started_at is not None:
            n += 1
        return f"{n} of {self.job.max_attempts}"

    @property
    def scheduled(self) -> datetime | None:
        """When a queued job that waits for nothing runs, if that is ahead (a delay, a retry's
        backoff)."""
        if self.job.state == JobState.QUEUED and not self.job.waiting_for and self.job.run_at > datetime.now(UTC):
            return self.job.run_at
        return None

    @property
    def waiting(self) -> str | None:
        if self.job.state == JobState.QUEUED and self.job.waiting_for:
            return WAITING_TEXT.get(self.job.waiting_for, self.job.waiting_for)
        return None

    @property
    def duration(self) -> str:
        return duration(self.job.duration_ms)

    @property
    def running_since(self) -> str:
        """When the clock of an unfinished job that started runs from (a parked run's too)."""
        if self.job.finished or self.job.started_at is None:
            return ""
        return iso(self.job.started_at)

    @property
    def can_cancel(self) -> bool:
        return self.job.state in (JobState.QUEUED, JobState.RUNNING) and not self.job.cancel_requested

    @property
    def can_retry(self) -> bool:
        return self.job.state in (JobState.FAILED, JobState.CANCELLED)

    @property
    def can_delete(self) -> bool:
        return self.job.finished

    @property
    def artifact_url(self) -> str | None:
        return f"/api/jobs/{self.id}/artifact" if self.job.result_path else None

    @property
    def artifact_name(self) -> str:
        return (self.job.result_path or "").rsplit("/", 1)[-1]

    @property
    def artifact(self) -> str | None:
        return artifact_kind(self.job.result_path, self.job.result) if self.job.state == JobState.COMPLETED else None

    @property
    def progress_text(self) -> str:
        parts = [p for p in (self.job.stage, self.job.progress_message) if p]
        return " · ".join(parts)

    @property
    def proposals(self) -> list[dict[str, Any]]:
        result = self.job.result
        if isinstance(result, dict) and isinstance(result.get("proposals"), list):
            return [p for p in result["proposals"] if isinstance(p, dict)]
        return []


def job_view(job: Job, stages: list[StageRow] | None = None) -> JobView:
    view = JobView(job, chip_of(job), [stage_view(s) for s in stages or []])
    view.key = (
        job.id,
        job.updated_at,
        job.fence,
        job.state,
        job.attempts,
        job.progress,
        job.cancel_requested,
        tuple((s.state, s.iteration, s.updated_at) for s in stages or []),
    )
    return view


class RowCache:
    """Rendered rows by what they show: a job's row changes only when the job (or a run's
    stage) is updated, and every change a row shows moves its updated_at, so a list of
    finished jobs is mostly dictionary lookups instead of template work (the rendering
    was half of a list page's CPU)."""

    def __init__(self, env: jinja2.Environment, size: int = 5000) -> None:
        self.template = env.get_template("fragments/row.html")
        self.size = size
        self._rows: OrderedDict[Any, Markup] = OrderedDict()

    def __call__(self, view: JobView) -> Markup:
        key = view.key
        html = self._rows.get(key)
        if html is None:
            html = Markup(self.template.render(v=view))
            self._rows[key] = html
            if len(self._rows) > self.size:
                self._rows.popitem(last=False)
        else:
            self._rows.move_to_end(key)
        return html


def event_line(event: JobEvent) -> str:
    """One line of a job's history; panel.js writes the same for live events (eventLine)."""
    data = event.data if isinstance(event.data, dict) else {}
    kind = event.kind
    if kind == EventKind.JOB_STATUS:
        state = str(data.get("state", "?"))
        text = state
        if data.get("waitingFor"):
            text += f", {WAITING_TEXT.get(str(data['waitingFor']), data['waitingFor'])}"
        if data.get("attempt") is not None and state == "running":
            text += (
                f" (attempt {data['attempt']}{' of ' + str(data['maxAttempts']) if data.get('maxAttempts') else ''})"
            )
        if data.get("reason"):
            text += f" ({data['reason']})"
        if data.get("cancelRequested"):
            text += " (cancel requested)"
        if data.get("errorMessage"):
            text += f": {data['errorMessage']}"
        if data.get("retryAt"):
            text += f"; retries at {data['retryAt']}"
        return text
    if kind == EventKind.JOB_PROGRESS:
        message = data.get("message")
        return f"{data.get('progress', 0)}%" + (f" {message}" if message else "")
    if kind == EventKind.STAGE_UPDATED:
        text = f"stage {data.get('stage', '?')}"
        if data.get("state"):
            text += f" {data['state']}"
        if data.get("iteration"):
            text += f" (iteration {data['iteration']})"
        if data.get("decision"):
            text += f": {data['decision']}"
        if data.get("feedback"):
            text += f" — {data['feedback']}"
        return text
    if kind == EventKind.PROPOSALS_UPDATED:
        return "new proposals"
    return kind


def asset_versions() -> dict[str, str]:
    """A short hash of each static file, put in its URL so a browser's cached copy is never
    a stale one (the files are served with a long max-age)."""
    out = {}
    for path in sorted(STATIC.iterdir()):
        if path.is_file():
            out[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return out


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        iso=iso,
        clock=clock,
        duration=duration,
        number=number,
        pretty=pretty,
        event_line=event_line,
        clock_text=clock_text,
        limits=limits,
    )
    env.globals.update(also_called=ALSO_CALLED, states=[s.value for s in JobState])
    env.globals["row"] = RowCache(env)
    return env
