"""The registered job types as enqueue needs them: each type's plan and payload check.

A type's worker registers its settings, and the JSON Schema of its payload (made from the
type's msgspec Struct), in pgcue.job_types; the API and every other producer check a job
against it before writing it, without importing the type's code. So `{"type": "tts",
"payload": {}}` is refused at once, naming payload.text, instead of failing later in a
worker. The catalog is read once and refreshed every `ttl` seconds, or sooner (at most
once a second) when asked for a type it does not know yet.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema_rs

from pgcue.core.errors import InvalidJob
from pgcue.core.models import JobType, NewJob


@dataclass(frozen=True)
class TypeEntry:
    name: str
    plan: str
    validator: Any | None  # a compiled JSON Schema validator, or None: any payload


def payload_errors(validator: Any, payload: Any) -> list[tuple[str, str]]:
    """(field, message) for each way `payload` breaks its schema, the field written as
    the API names it: payload.text, payload.scenes[0].duration."""
    out: list[tuple[str, str]] = []
    for error in validator.iter_errors(payload):
        path = "payload"
        for part in error.instance_path:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        missing = getattr(error.kind, "property", None)
        if type(error.kind).__name__ == "Required" and isinstance(missing, str):
            out.append((f"{path}.{missing}", f"{path}.{missing} is required"))
        else:
            out.append((path, f"{path}: {error.message}"))
        if len(out) >= 10:
            break
    return out


class TypeCatalog:
    def __init__(self, load: Callable[[], Awaitable[Sequence[JobType]]], ttl: float = 30.0) -> None:
        self._load = load
        self.ttl = ttl
        self._entries: dict[str, TypeEntry] = {}
        self._loaded = float("-inf")

    async def _refresh(self) -> None:
        entries = {}
        for t in await self._load():
            validator = jsonschema_rs.validator_for(t.payload_schema) if t.payload_schema else None
            entries[t.name] = TypeEntry(t.name, t.plan, validator)
        self._entries = entries
        self._loaded = time.monotonic()

    async def get(self, name: str) -> TypeEntry | None:
        """The type, or None when it is not registered."""
        age = time.monotonic() - self._loaded
        if age > self.ttl or (name not in self._entries and age > 1.0):
            await self._refresh()
        return self._entries.get(name)

    async def names(self) -> list[str]:
        """Every registered type's name, sorted (read again at most every `ttl` seconds)."""
        if time.monotonic() - self._loaded > self.ttl:
            await self._refresh()
        return sorted(self._entries)

    def forget(self) -> None:
        """Read the catalog again on the next lookup (types were just registered)."""
        self._loaded = float("-inf")

    async def check(self, jobs: Sequence[NewJob]) -> None:
        """Refuse (writing nothing) a job whose payload its type's schema rejects. A type
        the catalog does not know is left to the enqueue statement, which refuses it if
        it is not registered (it may have been registered a moment ago)."""
        seen: dict[str, TypeEntry | None] = {}
        for job in jobs:
            if job.type not in seen:
                seen[job.type] = await self.get(job.type)
            entry = seen[job.type]
            if entry is not None and entry.validator is not None:
                if not isinstance(job.payload, dict):
                    raise InvalidJob(f"payload of a {job.type} job must be a JSON object", "payload")
                errors = payload_errors(entry.validator, job.payload)
                if errors:
                    raise InvalidJob(
                        f"{'; '.join(message for _, message in errors)} (a {job.type} job's payload)", errors[0][0]
                    )
