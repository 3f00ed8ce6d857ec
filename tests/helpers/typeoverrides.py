"""Imported into a test worker (--import tests.helpers.typeoverrides) to give the studio types short
leases, so a test can kill a worker mid-job and see the job rescued within seconds."""

from __future__ import annotations

from pgcue.workers.runtime.registry import get, job_type

for _name in ("tts", "render", "resource-download"):
    _spec = get(_name)
    assert _spec.handler is not None
    job_type(_name, lease_seconds=2, retry_base_seconds=0.1)(_spec.handler)
