"""The supervisor stops a component even when the component lost its cancellation."""

from __future__ import annotations

import asyncio

from pgcue.core.components import Supervisor


class SwallowsItsCancellation:
    """A duty whose database went away as it was cancelled: the rollback's error replaced
    the CancelledError, the loop took it for an unavailable database and went back to
    waiting (in pgcue: _Duty.run waiting for a leadership that will never come back)."""

    name = "duty"

    def __init__(self) -> None:
        self.swallowed = 0

    async def run(self) -> None:
        never = asyncio.Event()
        while True:
            try:
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    raise ConnectionError("cannot perform operation: connection is closed") from None
            except ConnectionError:
                self.swallowed += 1
            await never.wait()


async def test_a_component_that_swallows_its_cancellation_is_stopped_anyway() -> None:
    supervisor = Supervisor(lambda name, exc: None)
    duty = SwallowsItsCancellation()
    supervisor.start(duty)
    await asyncio.sleep(0.05)
    stopping = asyncio.ensure_future(supervisor.stop())
    done, _ = await asyncio.wait({stopping}, timeout=5)
    assert stopping in done, "stop() still waits for a component that lost its cancellation"  # for good, before
    assert duty.swallowed == 1
    assert supervisor.tasks == {}
