"""Pipeline definitions: ordered stages, each with the job type doing its work, the reviewer
gating it, its iteration budget and whether a person must approve it.

Definitions are data. `pipeline(name, stages=[...])` registers one; when a run starts, each
stage's definition (Stage.spec()) is copied into its row of pgcue.pipeline_stages, so a
redeploy never changes a running pipeline. A reviewer is a job type (run as a child job
that returns {"passed": bool, "feedback": str}) or a built-in check, "check:<name>",
registered with @check and run in the orchestrator's process.

Stage inputs: each key of `inputs` names a field of the work job's payload and a path
to its value: "inputs.<key>" (the run's inputs) or "<stage>.<key>" (an earlier stage's
result). `payload` adds fixed fields. docs/pipelines.md has examples.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

CHECK_PREFIX = "check:"
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class Verdict:
    passed: bool
    feedback: str = ""


Check = Callable[[Any, dict[str, Any]], Verdict]  # (the work's result, review params) -> verdict


@dataclass(frozen=True)
class Stage:
    name: str
    type: str  # the job type doing the work
    reviewer: str | None = None  # a job type, or "check:<name>"; None: no review
    max_iterations: int = 3  # work attempts the reviewer may send back, then the stage fails
    approval: bool = False  # a person approves the reviewed work before the run goes on
    inputs: dict[str, str] = field(default_factory=dict)  # payload field -> "inputs.x" | "<stage>.x"
    payload: dict[str, Any] = field(default_factory=dict)  # fixed payload fields
    review: dict[str, Any] = field(default_factory=dict)  # parameters for the reviewer

    def spec(self) -> dict[str, Any]:
        """The stored copy of this stage's definition (camelCase, like the wire)."""
        return {
            "type": self.type,
            "reviewer": self.reviewer,
            "maxIterations": self.max_iterations,
            "approval": self.approval,
            "inputs": dict(self.inputs),
            "payload": dict(self.payload),
            "review": dict(self.review),
        }


@dataclass(frozen=True)
class Pipeline:
    name: str
    stages: tuple[Stage, ...]
    description: str = ""


_pipelines: dict[str, Pipeline] = {}
_checks: dict[str, Check] = {}


def pipeline(name: str, stages: Sequence[Stage], description: str = "") -> Pipeline:
    """Register (or replace) a pipeline definition; checked here, so a bad one fails at import."""
    if not _NAME.match(name):
        raise ValueError(f"pipeline name {name!r} must match {_NAME.pattern}")
    if not stages:
        raise ValueError(f"pipeline {name!r} needs at least one stage")
    seen: set[str] = set()
    for stage in stages:
        if not 1 <= len(stage.name) <= 100 or stage.name in seen:
            raise ValueError(f"pipeline {name!r}: stage names must be unique, 1 to 100 characters")
        if stage.max_iterations < 1:
            raise ValueError(f"pipeline {name!r}: stage {stage.name!r} needs max_iterations >= 1")
        for target, path in stage.inputs.items():
            source = path.split(".", 1)[0]
            if source != "inputs" and source not in seen:
                raise ValueError(
                    f"pipeline {name!r}: stage {stage.name!r} input {target!r} reads {path!r}, "
                    "which is neither the run's inputs nor an earlier stage"
                )
        seen.add(stage.name)
    entry = Pipeline(name, tuple(stages), description)
    _pipelines[name] = entry
    return entry


def get_pipeline(name: str) -> Pipeline:
    try:
        return _pipelines[name]
    except KeyError:
        known = ", ".join(sorted(_pipelines)) or "none"
        raise KeyError(f"unknown pipeline {name!r}; known pipelines: {known}") from None


def check(name: str) -> Callable[[Check], Check]:
    """Register a built-in reviewer, used as reviewer="check:<name>"."""

    def register(fn: Check) -> Check:
        _checks[name] = fn
        return fn

    return register


def get_check(reviewer: str) -> Check:
    name = reviewer.removeprefix(CHECK_PREFIX)
    try:
        return _checks[name]
    except KeyError:
        raise KeyError(f"unknown built-in check {reviewer!r}; known: {', '.join(sorted(_checks))}") from None


def resolve(path: str, inputs: Any, results: dict[str, Any]) -> Any:
    """The value at "inputs.a.b" or "<stage>.a.b" (None where a key is missing)."""
    head, _, rest = path.partition(".")
    value: Any = inputs if head == "inputs" else results.get(head)
    for key in rest.split(".") if rest else ():
        value = value.get(key) if isinstance(value, dict) else None
    return value


# --- built-in checks ---------------------------------------------------------------------


def _text_of(result: Any) -> str:
    if isinstance(result, dict):
        return str(result.get("text") or "")
    return "" if result is None else str(result)


@check("not-empty")
def not_empty(result: Any, params: dict[str, Any]) -> Verdict:
    """The work produced some text."""
    return Verdict(True) if _text_of(result).strip() else Verdict(False, "the result has no text; produce some")


@check("min-words")
def min_words(result: Any, params: dict[str, Any]) -> Verdict:
    """The text has at least `words` words (default 20)."""
    want = int(params.get("words", 20))
    have = len(_text_of(result).split())
    if have >= want:
        return Verdict(True, f"{have} words")
    return Verdict(False, f"the text has {have} words; it needs at least {want}")


# --- the default pipeline: an episode over the offline text types ----------------------------

EPISODE = pipeline(
    "episode",
    [
        Stage("idea", "idea", reviewer="check:not-empty", inputs={"topic": "inputs.topic"}, payload={"count": 3}),
        Stage("fact-check", "fact-check", reviewer="check:not-empty", inputs={"text": "idea.text"}),
        Stage(
            "humanize",
            "humanize",
            reviewer="check:min-words",
            review={"words": 5},
            approval=False,
            inputs={"text": "idea.text"},
        ),
    ],
    description="idea → fact-check → humanize, each gated by a built-in check (runs offline)",
)
