"""Event cursors (what an SSE `id:` holds), without a database: they round-trip, a forged
or impossible one is refused with a reason, and advance() delivers each event once even
when ids commit out of order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from pgcue.core.events import START, BadCursor, Cursor, Event, Snapshot, advance

JOB = uuid.uuid4()


def ev(i: int, tx: int) -> Event:
    return Event(i, tx, JOB, "a1", "job:output", {"n": i}, datetime.now(UTC))


def test_a_cursor_round_trips() -> None:
    c = Cursor(42, Snapshot(1000, 1005, frozenset({1001, 1003})), (40, 41))
    assert Cursor.decode(c.encode()) == c
    assert Cursor.decode(START.encode()) == START


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "1:2:3",
        "42:1000:999::",  # xmin > xmax
        "42:0:5::",  # xmin 0
        "42:1000:1005:999:",  # a running xid below xmin
        "42:1000:1005::43",  # an extra id above the last id
        "99999999999999999999:1:2::",  # too large
        "1:1:2:" + ",".join(["1"] * 1001) + ":",  # too many
        "42:1000:1005:\x00:",
    ],
)
def test_a_bad_cursor_is_refused_with_a_reason(text: str) -> None:
    with pytest.raises(BadCursor):
        Cursor.decode(text)


def test_advance_delivers_late_commits_once_and_in_id_order_otherwise() -> None:
    snap1 = Snapshot(100, 103, frozenset({101}))  # tx 101 still running when event 2 was read
    first = [ev(1, 100), ev(3, 102)]
    out = advance(START, first, snap1)
    assert [e.id for e, _ in out] == [1, 3]
    cursor = out[-1][1]
    # Event 2 (tx 101) commits late, below the last id delivered: it comes as an extra.
    snap2 = Snapshot(104, 104)
    again = advance(cursor, [ev(1, 100), ev(2, 101), ev(3, 102), ev(4, 103)], snap2)
    assert [e.id for e, _ in again] == [2, 4]
    late_cursor = again[0][1]
    assert late_cursor.extra == (2,) and late_cursor.delivered(ev(2, 101))
    # Nothing is delivered twice from the final cursor.
    assert advance(again[-1][1], [ev(1, 100), ev(2, 101), ev(3, 102), ev(4, 103)], snap2) == []
