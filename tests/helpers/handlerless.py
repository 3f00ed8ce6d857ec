"""Imported into `pgcue worker` by tests/test_cli.py: a job type the registry knows, with
settings but no handler in this process (as a studio type is until the module holding its
handler is imported), so the worker must refuse to run it."""

from __future__ import annotations

from pgcue.workers.runtime import registry

registry.declare(registry.TypeSpec("t-nohandler", description="settings only"))
