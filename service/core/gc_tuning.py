"""Settings of a long-running pgcue process (the API server, a worker)."""

from __future__ import annotations

import gc


def settle_garbage_collector() -> None:
    """Once a process is up: move everything alive now (modules, routes, pools, job type
    specs) out of the collector's reach with gc.freeze(), and collect the youngest
    generation less often.

    Under load the API and the workers keep thousands of short-lived objects alive across
    awaits (a request's or a running job's task, futures, contexts). With the default
    thresholds they were promoted and set off a full collection every second or two,
    which walked ~185,000 long-lived objects for 60-140 ms in the API (stalling every
    request and SSE stream in flight) and showed in a busy worker's profile as time spent
    in create_task and create_future, where the collections were triggered (py-spy during
    `make bench` http, sse and drain). Nothing here changes what is collected, only how
    often and over what."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)
