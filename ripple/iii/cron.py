"""Cron expressions as the iii engine reads them (the Rust ``cron`` crate): pure parsing and "when next".

Six or seven fields: ``second minute hour day-of-month month day-of-week [year]``. Each field is ``*`` (or ``?``), a
value, a range ``a-b``, a step ``*/n``, ``a/n`` or ``a-b/n``, or a comma-separated list of those. Months take
``JAN`` to ``DEC``, weekdays ``1`` to ``7`` (Sunday = 1) or ``SUN`` to ``SAT``. A date must match both the
day-of-month and the day-of-week fields. Times are UTC.
"""

from __future__ import annotations

import datetime as dt

import msgspec

_MONTHS = {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())}
_DAYS = {d: i + 1 for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())}
# (name, lowest, highest, names)
_FIELDS: list[tuple[str, int, int, dict[str, int]]] = [
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 1, 7, _DAYS),
    ("year", 1970, 2099, {}),
]
HORIZON_YEARS = 8  # a schedule that never fires within this many years is treated as finished


class CronSchedule(msgspec.Struct, frozen=True):
    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 1 = Sunday
    years: frozenset[int] | None

    def matches_date(self, day: dt.date) -> bool:
        weekday = day.isoweekday() % 7 + 1  # Monday=1..Sunday=7 → Sunday=1..Saturday=7
        return (
            day.month in self.months
            and day.day in self.days
            and weekday in self.weekdays
            and (self.years is None or day.year in self.years)
        )

    def next_after(self, now: dt.datetime) -> dt.datetime | None:
        """The first matching second strictly after ``now`` (UTC), or ``None`` within :data:`HORIZON_YEARS`."""
        start = now.astimezone(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=1)
        day = start.date()
        end = day.replace(year=day.year + HORIZON_YEARS)
        first = True
        while day < end:
            if self.matches_date(day):
                time = _first_time(self, start.time() if first else dt.time(0, 0, 0))
                if time is not None:
                    return dt.datetime.combine(day, time, tzinfo=dt.UTC)
            day += dt.timedelta(days=1)
            first = False
        return None


def _first_time(schedule: CronSchedule, earliest: dt.time) -> dt.time | None:
    for hour in sorted(h for h in schedule.hours if h >= earliest.hour):
        for minute in sorted(schedule.minutes):
            if hour == earliest.hour and minute < earliest.minute:
                continue
            for second in sorted(schedule.seconds):
                if (hour, minute) == (earliest.hour, earliest.minute) and second < earliest.second:
                    continue
                return dt.time(hour, minute, second)
    return None


def _value(text: str, field: tuple[str, int, int, dict[str, int]]) -> int:
    name, low, high, names = field
    upper = text.upper()
    if upper in names:
        return names[upper]
    if not text.isdigit():
        raise ValueError(f"{name}: {text!r} is not a number")
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{name}: {value} is outside {low}-{high}")
    return value


def _field(text: str, field: tuple[str, int, int, dict[str, int]]) -> frozenset[int]:
    name, low, high, _ = field
    values: set[int] = set()
    for part in text.split(","):
        span, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"{name}: bad step in {part!r}")
            step = int(step_text)
        if span in ("*", "?"):
            first, last = low, high
        elif "-" in span:
            a, _, b = span.partition("-")
            first, last = _value(a, field), _value(b, field)
            if first > last:
                raise ValueError(f"{name}: range {span!r} runs backwards")
        else:
            first = _value(span, field)
            last = high if slash else first
        values.update(range(first, last + 1, step))
    return frozenset(values)


def parse_cron(expression: str) -> CronSchedule:
    """Parse a 6- or 7-field cron expression; raises ``ValueError`` with the engine's wording."""
    parts = expression.split()
    if len(parts) not in (6, 7):
        raise ValueError(
            f"Invalid cron expression '{expression}': expected 6 or 7 fields "
            f"(sec min hour day-of-month month day-of-week [year]), got {len(parts)}"
        )
    try:
        fields = [_field(p, f) for p, f in zip(parts, _FIELDS, strict=False)]
    except ValueError as exc:
        raise ValueError(f"Invalid cron expression '{expression}': {exc}") from None
    second, minute, hour, day, month, weekday = fields[:6]
    years = fields[6] if len(fields) == 7 else None
    return CronSchedule(expression, second, minute, hour, day, month, weekday, years)
