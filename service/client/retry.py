"""When a call is tried again, and how long the client waits first.

Only calls that cannot act twice are retried after their request may have reached the
server: GETs (jobs, lists, artifacts, streams), DELETE, and POST /api/jobs, which always
carries an Idempotency-Key (so a retried enqueue returns the job the first try made).
They are retried on a connection error, a timeout, and on 502, 503 and 504 (and 429 with
Retry-After). cancel, retry, clear, approve and reject are retried only when the
connection could not be made at all (the request never left); any later failure is
raised, since doing them twice is not the same as once (a second approve could decide
the run's next stage).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx

RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_RETRY_AFTER = 30.0  # a longer Retry-After is cut to this


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`retries` more tries after the first; before try n+1 the client waits a random time
    between half and all of min(max_backoff, backoff * 2**n) seconds ("equal jitter", so
    clients cut off together do not come back together), or the server's Retry-After if
    that is longer."""

    retries: int = 4
    backoff: float = 0.25
    max_backoff: float = 5.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0 for the first retry)."""
        ceiling = min(self.max_backoff, self.backoff * 2.0 ** min(attempt, 30))
        wait = random.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            wait = max(wait, min(retry_after, MAX_RETRY_AFTER))
        return wait


NO_RETRY = RetryPolicy(retries=0)


def never_sent(exc: httpx.TransportError) -> bool:
    """Whether the request surely never reached the server: no connection was made."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def retryable(exc: httpx.TransportError) -> bool:
    """Whether trying again could help (a wrong URL scheme will not)."""
    return not isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError | httpx.ProxyError)
