"""Cron expressions, without a database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pgcue.core.cron import Cron, CronError


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 3 * * *", "2026-01-01T02:59:59", "2026-01-01T03:00:00"),
        ("0 3 * * *", "2026-01-01T03:00:00", "2026-01-02T03:00:00"),
        ("*/15 * * * *", "2026-01-01T00:14:59", "2026-01-01T00:15:00"),
        ("* * * * * *", "2026-01-01T00:00:00", "2026-01-01T00:00:01"),
        ("30 9 * * 1", "2026-01-01T00:00:00", "2026-01-05T09:30:00"),  # the next Monday
        ("0 0 1 * 0", "2026-02-02T00:00:00", "2026-02-08T00:00:00"),  # day 1 OR a Sunday
        ("0 0 29 2 *", "2026-01-01T00:00:00", "2028-02-29T00:00:00"),  # the next leap day
        ("0 12 * * 7", "2026-01-01T00:00:00", "2026-01-04T12:00:00"),  # 7 is Sunday too
        ("5-10/5 * * * *", "2026-01-01T00:06:00", "2026-01-01T00:10:00"),
    ],
)
def test_next_after(expression: str, after: str, expected: str) -> None:
    assert Cron.parse(expression).next_after(at(after)) == at(expected)


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("* * * *", "needs 5 fields"),
        ("61 * * * *", "minute field '61' is out of range"),
        ("* * * * 8", "weekday field '8' is out of range"),
        ("*/0 * * * *", "out of range"),
        ("a * * * *", "is not a number"),
        ("5-1 * * * *", "out of range"),
    ],
)
def test_a_bad_expression_says_which_field(expression: str, says: str) -> None:
    with pytest.raises(CronError, match=says):
        Cron.parse(expression)


def test_an_expression_that_never_matches_is_an_error() -> None:
    with pytest.raises(CronError, match="never matches"):
        Cron.parse("0 0 31 2 *").next_after(at("2026-01-01T00:00:00"))
