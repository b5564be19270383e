"""When periodic tasks run: Celery's ``crontab`` and ``schedule``, evaluated DST-correctly.

``crontab(minute=30, hour=7, day_of_week='mon-fri')`` takes Celery's argument forms
(``'*/5'``, ``'1-5'``, ``'mon-fri'``, integers, sets) and is checked when it is built:
``crontab(minute=61)`` raises at once, not at 3 a.m. inside the scheduler. Wall-clock
matching is croniter's (both day fields must match, like Celery); mapping wall-clock times
to instants in the schedule's time zone is done here, with these rules across DST changes:

* Schedules with specific hours fire once per matching wall-clock time. A time the clock
  shows twice (autumn) fires at its first occurrence; a time the clock skips (spring) fires
  when the gap ends (02:30 fires at 03:00 on the day clocks go from 02:00 to 03:00).
* Schedules that run every hour (hour ``*``) follow elapsed time: ``*/15 * * * *`` fires
  every 15 real minutes, through the repeated hour too, and never at skipped times.
"""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

UTC = timezone.utc
_WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december")
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February of leap years
# Cron shortcuts croniter also knows, as the five fields they stand for.
_SHORTCUTS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class _Field(NamedTuple):
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # accepted names (full or three letters), numbered from low

    @property
    def accepts(self) -> str:
        example = {"minute": "'*/15' or '0,30'", "hour": "'9-17' or '*/2'",
                   "day_of_month": "'1' or '1-7'", "month_of_year": "'1-6' or 'jan-jun'",
                   "day_of_week": "'mon-fri' or '0,6'"}[self.name]
        return f"{self.low}-{self.high}, e.g. {example}"


_MINUTE = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DAY_OF_MONTH = _Field("day_of_month", 1, 31)
_MONTH = _Field("month_of_year", 1, 12, _MONTHS)
_DAY_OF_WEEK = _Field("day_of_week", 0, 6, _WEEKDAYS)


class _BadField(ValueError):
    pass


def _number(token: str, field: _Field) -> int:
    text = token.strip().lower()
    if text.isdigit():
        number = int(text)
    elif field.names and any(text in (n, n[:3]) for n in field.names):
        number = next(i for i, n in enumerate(field.names) if text in (n, n[:3])) + field.low
    else:
        kind = "a number or a name" if field.names else "a number"
        raise _BadField(f"{token.strip()!r} is not {kind}")
    high = 7 if field is _DAY_OF_WEEK else field.high  # cron's 7 is Sunday too
    if not field.low <= number <= high:
        raise _BadField(f"{number} is out of range {field.low}-{field.high}")
    return number


def _part(part: str, field: _Field) -> list[int]:
    body, slash, step_text = part.strip().partition("/")
    step = 1
    if slash:
        if not step_text.strip().isdigit() or int(step_text) == 0:
            raise _BadField(f"step {step_text.strip()!r} must be a positive whole number")
        step = int(step_text)
    if body == "*":
        values = list(range(field.low, field.high + 1))
    elif "-" in body.strip("-"):
        first, last = (_number(t, field) for t in body.split("-", 1))
        top = 7 if field is _DAY_OF_WEEK else field.high
        values = (list(range(first, last + 1)) if first <= last  # '22-2' wraps, like Celery
                  else list(range(first, top + 1)) + list(range(field.low, last + 1)))
    elif body.strip():
        first = _number(body, field)
        values = list(range(first, field.high + 1)) if slash else [first]
    else:
        raise _BadField(f"empty element in {part!r}")
    return values[::step]


FieldValue = int | str | Iterable[int | str]


def _parse(value: FieldValue, field: _Field) -> frozenset[int]:
    """The numbers a crontab field matches; a ValueError naming the field when invalid."""
    try:
        numbers: list[int] = []
        if isinstance(value, bool):
            raise _BadField("booleans are not accepted")
        if isinstance(value, int):
            if value < 0:
                raise _BadField(f"{value} is out of range {field.low}-{field.high}")
            numbers.append(_number(str(value), field))
        elif isinstance(value, str):
            for part in value.split(","):
                numbers.extend(_part(part, field))
        elif isinstance(value, Iterable):
            for item in value:
                numbers.extend(_parse(item, field))
        else:
            raise _BadField(f"expected an int, a string or a set, not {type(value).__name__}")
        if not numbers:
            raise _BadField("it matches nothing")
    except _BadField as error:
        raise ValueError(f"crontab {field.name}={value!r}: {error} "
                         f"(accepted: {field.accepts})") from None
    return frozenset(0 if field is _DAY_OF_WEEK and n == 7 else n for n in numbers)


def _render(numbers: frozenset[int], field: _Field) -> str:
    """The shortest usual cron text for a set: '*', '*/5', '1-5', '0,30'."""
    ordered = sorted(numbers)
    if ordered == list(range(field.low, field.high + 1)):
        return "*"
    step = ordered[1] - ordered[0] if len(ordered) > 2 else 0
    if (step > 1 and ordered[-1] + step > field.high
            and all(b - a == step for a, b in zip(ordered, ordered[1:], strict=False))):
        start = "*" if ordered[0] == field.low else f"{ordered[0]}-{field.high}"
        return f"{start}/{step}"
    runs: list[list[int]] = []
    for n in ordered:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ",".join(map(str, r)) for r in runs)


# -- time zones ---------------------------------------------------------------------------
@functools.cache
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def check_timezone(value: Any) -> str:
    """The IANA name of a time zone; a clear ValueError for names that are not one."""
    if isinstance(value, ZoneInfo):
        return value.key
    if value is UTC:
        return "UTC"
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"time zone must be an IANA name such as 'Europe/Berlin', "
                         f"not {value!r}")
    try:
        zone(value)
    except (ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(value, sorted(available_timezones()), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown time zone {value!r}{hint} (use an IANA name such as "
                         "'Europe/Berlin', 'America/New_York' or 'UTC')") from None
    return value


def _transition(before: datetime, after: datetime, tz: ZoneInfo) -> datetime:
    """The first second in (before, after] whose UTC offset differs from ``before``'s."""
    offset = before.astimezone(tz).utcoffset()
    low, high = math.floor(before.timestamp()), math.ceil(after.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, tz).utcoffset() == offset:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, UTC)


def _instants(wall: datetime, tz: ZoneInfo, elapsed: bool) -> list[datetime]:
    """The instants at which a matching wall-clock time fires (see the module's rules)."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first == second:
        return [first]
    if first.astimezone(tz).replace(tzinfo=None) == wall:  # shown twice (autumn)
        return sorted((first, second)) if elapsed else [min(first, second)]
    # skipped (spring): never, or when the gap ends
    return [] if elapsed else [_transition(min(first, second), max(first, second), tz)]


# -- schedules ----------------------------------------------------------------------------
class crontab:  # noqa: N801 - Celery's name
    """Cron-like schedule: ``crontab(minute=0, hour='*/3', day_of_week='mon-fri')``.

    Arguments are Celery's, in Celery's order. ``day_of_week`` counts from Sunday = 0
    (7 is Sunday too). When both day fields are restricted a day must match both, as in
    Celery. ``tz`` overrides the app's ``timezone`` for this schedule.
    """

    def __init__(
        self,
        minute: FieldValue = "*",
        hour: FieldValue = "*",
        day_of_week: FieldValue = "*",
        day_of_month: FieldValue = "*",
        month_of_year: FieldValue = "*",
        *,
        tz: str | ZoneInfo | None = None,
    ) -> None:
        self.minute = _parse(minute, _MINUTE)
        self.hour = _parse(hour, _HOUR)
        self.day_of_week = _parse(day_of_week, _DAY_OF_WEEK)
        self.day_of_month = _parse(day_of_month, _DAY_OF_MONTH)
        self.month_of_year = _parse(month_of_year, _MONTH)
        self.tz = check_timezone(tz) if tz is not None else None
        if not any(d <= _DAYS_IN_MONTH[m - 1] for m in self.month_of_year
                   for d in self.day_of_month):
            raise ValueError(f"crontab day_of_month={day_of_month!r} with month_of_year="
                             f"{month_of_year!r} never matches a date")
        self.expression = " ".join((
            _render(self.minute, _MINUTE), _render(self.hour, _HOUR),
            _render(self.day_of_month, _DAY_OF_MONTH), _render(self.month_of_year, _MONTH),
            _render(self.day_of_week, _DAY_OF_WEEK)))
        # Hourly (or more often): elapsed-time rules across DST changes; see the module doc.
        self._elapsed = len(self.hour) == 24

    @classmethod
    def from_string(cls, expression: str, tz: str | ZoneInfo | None = None) -> crontab:
        """Parse a five-field cron expression (``'0 6 * * 4'``) or a shortcut (``@daily``).

        Cron runs a job whose day-of-month and day-of-week are both restricted on days
        matching *either*; Celery's crontab on days matching *both*. Such an expression is
        refused here, so that it cannot silently mean the other thing.
        """
        parsed = parse_cron(expression, tz)
        if len(parsed.day_of_month) < 31 and len(parsed.day_of_week) < 7:
            raise ValueError(
                f"cron expression {expression!r} restricts both day-of-month and "
                "day-of-week; cron would run on days matching either, Celery's crontab on "
                "days matching both. Say which: crontab(day_of_month=..., day_of_week=...) "
                "runs when both match; for either, define two schedules")
        return parsed

    @property
    def cron(self) -> str:
        return self.expression

    def __repr__(self) -> str:
        zone_part = f", tz={self.tz!r}" if self.tz else ""
        return f"<crontab: {self.expression} (m/h/dM/MY/d){zone_part}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, crontab):
            return NotImplemented
        return (self.expression, self.tz) == (other.expression, other.tz)

    def __hash__(self) -> int:
        return hash((self.expression, self.tz))

    def next_after(self, after: datetime, tz: str | None = None) -> datetime:
        """The first fire time strictly after ``after`` (aware), in UTC.

        Evaluated in ``self.tz``, else ``tz`` (the app's), else UTC.
        """
        if after.tzinfo is None:
            raise ValueError("next_after needs a timezone-aware datetime")
        where = zone(self.tz or tz or "UTC")
        local = after.astimezone(where)
        best = self._first_after(local.replace(tzinfo=None), after, where)
        if self._elapsed and local.fold == 0 and \
                local.replace(fold=1).utcoffset() != local.utcoffset():
            # In the first pass of an hour the clock will show again: its second pass has
            # wall-clock times earlier than now that still lie ahead.
            shift = local.utcoffset() - local.replace(fold=1).utcoffset()  # type: ignore[operator]
            change = _transition(after, after + shift, where)
            repeat = change.astimezone(where).replace(tzinfo=None) - timedelta(microseconds=1)
            best = min(best, self._first_after(repeat, after, where))
        return best

    def _first_after(self, wall_start: datetime, after: datetime, tz: ZoneInfo) -> datetime:
        for wall in self._walls(wall_start):
            for instant in _instants(wall, tz, self._elapsed):
                if instant > after:
                    return instant
        raise AssertionError("unreachable: wall-clock times grow without bound")

    def _walls(self, start: datetime) -> Iterator[datetime]:
        # Imported here: a web process that imports pgqueue only to send tasks never
        # evaluates a cron expression (docs/architecture.md, "a light import").
        from croniter import croniter

        times = croniter(self.expression, start, day_or=False, max_years_between_matches=50)
        while True:
            yield times.get_next(datetime)

    def first_run_after(self, now: datetime, tz: str | None = None) -> datetime:
        return self.next_after(now, tz)

    def last_at_or_before(self, now: datetime, since: datetime, tz: str | None = None
                          ) -> datetime:
        """The latest fire time in [since, now]; ``since`` must be a fire time <= now."""
        for window in (timedelta(minutes=2), timedelta(days=1), timedelta(days=32),
                       timedelta(days=366 * 50)):
            cursor = max(since - timedelta(microseconds=1), now - window)
            found = None
            fire = self.next_after(cursor, tz)
            while fire <= now:
                found = fire
                fire = self.next_after(fire, tz)
            if found is not None:
                return found
        return since


def parse_cron(expression: str, tz: str | ZoneInfo | None = None) -> crontab:
    """A stored five-field expression as a crontab (both day fields: must match both)."""
    if not isinstance(expression, str):
        raise ValueError(f"a cron expression must be a string, not {expression!r}")
    text = _SHORTCUTS.get(expression.strip().lower(), expression)
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"cron expression {expression!r} must have 5 fields (minute hour "
                         f"day-of-month month day-of-week), e.g. '30 7 * * 1'; got "
                         f"{len(fields)}")
    minute, hour, day_of_month, month, day_of_week = fields
    return crontab(minute, hour, day_of_week, day_of_month, month, tz=tz)


class schedule:  # noqa: N801 - Celery's name
    """Every ``run_every`` (seconds or a timedelta): ``schedule(run_every=10)``.

    Fire times keep their phase: after a pause the next fire stays on the same grid.
    """

    def __init__(self, run_every: float | timedelta | None = None,
                 relative: bool = False) -> None:
        if relative:
            raise ValueError("schedule(relative=True) is not supported; intervals are "
                             "counted from the schedule's first fire time")
        self.run_every = as_interval(run_every)

    @property
    def seconds(self) -> float:
        return self.run_every.total_seconds()

    def __repr__(self) -> str:
        return f"<freq: {self.seconds:g} seconds>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, schedule):
            return NotImplemented
        return self.run_every == other.run_every

    def __hash__(self) -> int:
        return hash(self.run_every)

    def next_after(self, after: datetime, tz: str | None = None) -> datetime:
        return after + self.run_every

    def first_run_after(self, now: datetime, tz: str | None = None) -> datetime:
        """One interval from now, on a whole second when the interval is whole seconds."""
        first = now + self.run_every
        if self.run_every.microseconds == 0:
            first = first.replace(microsecond=0)
        return first

    def last_at_or_before(self, now: datetime, since: datetime, tz: str | None = None
                          ) -> datetime:
        if now < since:
            return since
        return since + ((now - since) // self.run_every) * self.run_every


def as_interval(value: Any) -> timedelta:
    """Seconds or a timedelta, checked positive."""
    if isinstance(value, timedelta):
        every = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"an interval must be a finite number of seconds, not {value!r}")
        every = timedelta(seconds=value)
    else:
        raise TypeError(f"an interval must be seconds or a timedelta, not {value!r}")
    if every <= timedelta(0):
        raise ValueError(f"an interval must be positive, got {every.total_seconds():g} seconds")
    return every


Schedule = crontab | schedule


def as_schedule(value: Any) -> Schedule:
    """What ``beat_schedule``'s ``"schedule"`` may hold: crontab, schedule, seconds,
    a timedelta, or a five-field cron string."""
    if isinstance(value, (crontab, schedule)):
        return value
    if isinstance(value, str):
        return crontab.from_string(value)
    if isinstance(value, (int, float, timedelta)) and not isinstance(value, bool):
        return schedule(value)
    hint = ""
    if type(value).__module__.startswith("celery"):
        hint = "; import crontab and schedule from pgqueue.schedules instead of celery"
    raise TypeError(f"a schedule must be crontab(...), schedule(...), seconds, a timedelta "
                    f"or a cron string, not {value!r}{hint}")


__all__ = ["crontab", "schedule", "as_schedule", "check_timezone", "parse_cron"]
