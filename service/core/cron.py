"""Cron expressions: five fields (minute hour day month weekday), or six with seconds first.

Each field takes `*`, a number, a range `a-b`, a step `*/n` or `a-b/n`, and lists of
those (`1,15,30-40/5`). Weekday 0 and 7 are Sunday. As in classic cron, when both day of
month and weekday are restricted, a day matching either one runs. Times are UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

_FIELDS = (("second", 0, 59), ("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12), ("weekday", 0, 7))


class CronError(ValueError):
    """The expression cannot be read; the message says which field and why."""


def _field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if body == "*":
                start, end = low, high
            elif "-" in body:
                a, b = body.split("-", 1)
                start, end = int(a), int(b)
            else:
                start = end = int(body)
                if step_text:
                    end = high
        except ValueError:
            raise CronError(f"cron {name} field {text!r} is not a number, range, list or step") from None
        if step < 1 or not low <= start <= high or not low <= end <= high or start > end:
            raise CronError(f"cron {name} field {text!r} is out of range ({low}-{high})")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, expression: str) -> Cron:
        parts = expression.split()
        if len(parts) == 5:
            parts = ["0", *parts]
        if len(parts) != 6:
            raise CronError(f"cron {expression!r} needs 5 fields (minute hour day month weekday) or 6 (seconds first)")
        sets = [_field(text, *spec) for text, spec in zip(parts, _FIELDS, strict=True)]
        weekdays = frozenset(d % 7 for d in sets[5])
        seconds, minutes, hours, days, months = sets[:5]
        return cls(expression, seconds, minutes, hours, days, months, weekdays, parts[3] == "*", parts[5] == "*")

    def _day_matches(self, t: datetime) -> bool:
        weekday = (t.weekday() + 1) % 7  # Python: Monday 0; cron: Sunday 0
        day_ok, weekday_ok = t.day in self.days, weekday in self.weekdays
        if self.any_day or self.any_weekday:
            return day_ok and weekday_ok
        return day_ok or weekday_ok

    def next_after(self, after: datetime) -> datetime:
        """The first time strictly after `after` that the expression matches."""
        t = after.replace(microsecond=0) + timedelta(seconds=1)
        for _ in range(100_000):  # each step moves to the next candidate unit; years of room
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0, second=0) + timedelta(days=32)).replace(day=1)
            elif not self._day_matches(t):
                t = t.replace(hour=0, minute=0, second=0) + timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0, second=0) + timedelta(hours=1)
            elif t.minute not in self.minutes:
                t = t.replace(second=0) + timedelta(minutes=1)
            elif t.second not in self.seconds:
                t = t + timedelta(seconds=1)
            else:
                return t
        raise CronError(f"cron {self.expression!r} never matches")
