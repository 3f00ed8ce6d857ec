"""Imported into a test worker (--import tests.helpers.generateoverrides) to give `generate`
a short retry base, the lease of $PGCUE_TEST_GENERATE_LEASE seconds (default 10; a test
that kills a worker mid-poll sets 2, to see the job rescued within seconds) and the
per-channel limit of $PGCUE_TEST_GENERATE_CHANNEL_LIMIT (none when unset, so tests that
are not about the limit are not held by it)."""

from __future__ import annotations

import os

from pgcue.workers.runtime.registry import get, job_type

_spec = get("generate")
assert _spec.handler is not None
_limit = os.environ.get("PGCUE_TEST_GENERATE_CHANNEL_LIMIT")
job_type(
    "generate",
    lease_seconds=int(os.environ.get("PGCUE_TEST_GENERATE_LEASE", "10")),
    retry_base_seconds=0.1,
    channel_concurrency=int(_limit) if _limit else None,
)(_spec.handler)
