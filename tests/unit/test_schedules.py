"""crontab and schedule: Celery's argument forms, validation at definition, DST rules."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from pgqueue import crontab as crontab_from_package
from pgqueue import schedule as schedule_from_package
from pgqueue.schedules import as_schedule, check_timezone, crontab, parse_cron, schedule

UTC = timezone.utc
BERLIN = "Europe/Berlin"


def fires(timetable: crontab, start: datetime, end: datetime, tz: str = BERLIN
          ) -> list[datetime]:
    """Every fire time in (start, end], checking they strictly increase."""
    found: list[datetime] = []
    moment = start
    while True:
        moment = timetable.next_after(moment, tz)
        if moment > end:
            return found
        assert not found or moment > found[-1]
        found.append(moment)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# -- argument forms -------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "expression"), [
    ({}, "* * * * *"),
    ({"minute": "*/5"}, "*/5 * * * *"),
    ({"minute": 0, "hour": "1-5"}, "0 1-5 * * *"),
    ({"day_of_week": "mon-fri"}, "* * * * 1-5"),
    ({"day_of_week": "Monday,wed"}, "* * * * 1,3"),
    ({"day_of_week": "sat-sun"}, "* * * * 0,6"),  # ranges wrap, like Celery's
    ({"day_of_week": 7}, "* * * * 0"),  # cron's 7 is Sunday
    ({"minute": {0, 30}}, "0,30 * * * *"),
    ({"hour": [1, 2, 3, 7]}, "* 1-3,7 * * *"),
    ({"hour": range(0, 24, 6)}, "* */6 * * *"),
    ({"hour": "22-2"}, "* 0-2,22,23 * * *"),
    ({"minute": "5-59/10"}, "5-59/10 * * * *"),
    ({"minute": "10/20"}, "10-59/20 * * * *"),
    ({"day_of_month": "*/2"}, "* * */2 * *"),
    ({"month_of_year": "jan-mar"}, "* * * 1-3 *"),
    ({"minute": 0, "hour": "*/3,8-17"}, "0 0,3,6,8-18,21 * * *"),
    ({"minute": 0, "hour": 0, "day_of_month": "2-30/2"}, "0 0 2-31/2 * *"),  # same days, normalised
])
def test_celery_argument_forms(kwargs: dict[str, object], expression: str) -> None:
    assert crontab(**kwargs).expression == expression  # type: ignore[arg-type]


def test_fields_are_sets_like_celerys() -> None:
    c = crontab(minute="*/15", hour="9-17", day_of_week="mon-fri")
    assert c.minute == {0, 15, 30, 45}
    assert c.hour == set(range(9, 18))
    assert c.day_of_week == {1, 2, 3, 4, 5}
    assert c.day_of_month == set(range(1, 32))


def test_positional_arguments_follow_celerys_order() -> None:
    # minute, hour, day_of_week, day_of_month, month_of_year
    assert crontab(0, 0, day_of_month="11", month_of_year="5").expression == "0 0 11 5 *"
    assert crontab(30, 7, 1).expression == "30 7 * * 1"


def test_equal_schedules_written_differently_compare_equal() -> None:
    assert crontab(minute=0, hour="*/3") == crontab(minute=0, hour="0,3,6,9,12,15,18,21")
    assert crontab(minute=0) != crontab(minute=0, tz="Europe/Paris")
    assert schedule(10) == schedule(timedelta(seconds=10)) == as_schedule(10.0)


def test_public_import_paths() -> None:
    assert crontab_from_package is crontab
    assert schedule_from_package is schedule


# -- validation at definition ---------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"minute": 61}, "minute=61: 61 is out of range 0-59"),
    ({"hour": "24"}, "hour='24': 24 is out of range 0-23"),
    ({"hour": -1}, "out of range 0-23"),
    ({"day_of_month": 0}, "out of range 1-31"),
    ({"month_of_year": 13}, "out of range 1-12"),
    ({"day_of_week": "funday"}, "'funday' is not a number or a name"),
    ({"minute": "*/0"}, "step '0' must be a positive whole number"),
    ({"minute": "1,,2"}, "empty element"),
    ({"minute": ""}, "empty element"),
    ({"minute": True}, "booleans are not accepted"),
    ({"minute": 1.5}, "expected an int, a string or a set"),
    ({"minute": set()}, "matches nothing"),
    ({"day_of_month": 30, "month_of_year": 2}, "never matches a date"),
])
def test_bad_fields_are_refused_when_the_crontab_is_built(kwargs: dict[str, object],
                                                          fragment: str) -> None:
    with pytest.raises(ValueError) as error:
        crontab(**kwargs)  # type: ignore[arg-type]
    assert fragment in str(error.value)
    assert "accepted" in str(error.value) or "never" in str(error.value)


def test_february_29th_is_a_possible_date() -> None:
    leap = crontab(0, 12, day_of_month=29, month_of_year=2)
    assert leap.next_after(utc(2026, 1, 1)) == utc(2028, 2, 29, 12)


def test_bad_time_zone_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Europe/Berln'; did you mean "
                                         "'Europe/Berlin'"):
        crontab(minute=0, tz="Europe/Berln")
    with pytest.raises(ValueError, match="IANA name"):
        check_timezone("")
    assert check_timezone(ZoneInfo("Asia/Tokyo")) == "Asia/Tokyo"
    assert check_timezone(UTC) == "UTC"


def test_cron_strings() -> None:
    assert crontab.from_string("0 6 * * 4").expression == "0 6 * * 4"
    assert crontab.from_string("@daily") == crontab(minute=0, hour=0)
    assert crontab.from_string("*/10 3,17,22 * * thu,fri").day_of_week == {4, 5}
    with pytest.raises(ValueError, match="must have 5 fields"):
        crontab.from_string("0 6 * *")
    with pytest.raises(ValueError, match="minute='61'"):
        crontab.from_string("61 * * * *")


def test_cron_string_restricting_both_day_fields_is_refused_as_ambiguous() -> None:
    with pytest.raises(ValueError, match="restricts both day-of-month and day-of-week"):
        crontab.from_string("0 0 1 * mon")
    # A crontab says which it means (both must match, as in Celery), and survives storage.
    first_mondays = crontab(0, 0, day_of_week="mon", day_of_month="1-7")
    assert parse_cron(first_mondays.expression) == first_mondays
    found = fires(first_mondays, utc(2026, 1, 1), utc(2026, 12, 31), "UTC")
    assert [d.date() for d in found][:3] == [date(2026, 1, 5), date(2026, 2, 2),
                                             date(2026, 3, 2)]
    assert len(found) == 12 and all(d.weekday() == 0 and d.day <= 7 for d in found)


def test_schedule_intervals() -> None:
    assert schedule(run_every=10).seconds == 10
    assert schedule(timedelta(minutes=1)).seconds == 60
    for bad in (0, -5, float("inf")):
        with pytest.raises(ValueError):
            schedule(bad)
    with pytest.raises(TypeError, match="seconds or a timedelta"):
        schedule("10")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"relative=True\) is not supported"):
        schedule(10, relative=True)


def test_a_celery_crontab_object_gets_a_hint() -> None:
    celery_crontab = type("crontab", (), {"__module__": "celery.schedules"})()
    with pytest.raises(TypeError, match="import crontab and schedule from pgqueue.schedules"):
        as_schedule(celery_crontab)


# -- evaluation -----------------------------------------------------------------------------
def test_celerys_monday_morning_example() -> None:
    monday_morning = crontab(hour=7, minute=30, day_of_week=1)
    # Tuesday 2026-03-03 -> Monday 2026-03-09 07:30 in the schedule's zone.
    assert monday_morning.next_after(utc(2026, 3, 3, 12), "UTC") == utc(2026, 3, 9, 7, 30)
    assert monday_morning.next_after(utc(2026, 3, 3, 12), BERLIN) == utc(2026, 3, 9, 6, 30)
    berlin_own = crontab(hour=7, minute=30, day_of_week=1, tz=BERLIN)
    assert berlin_own.next_after(utc(2026, 3, 3, 12), "UTC") == utc(2026, 3, 9, 6, 30)


def test_next_after_needs_an_aware_datetime() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        crontab().next_after(datetime(2026, 1, 1))


def test_interval_grid_keeps_its_phase() -> None:
    every = schedule(1.0)
    first = every.first_run_after(utc(2026, 5, 5, 12, 0, 0) + timedelta(microseconds=300))
    assert first == utc(2026, 5, 5, 12, 0, 1)
    late = utc(2026, 5, 5, 13, 0, 5) + timedelta(microseconds=500000)
    assert every.last_at_or_before(late, first) == utc(2026, 5, 5, 13, 0, 5)
    assert schedule(0.25).first_run_after(utc(2026, 1, 1)) == utc(2026, 1, 1) + timedelta(
        seconds=0.25)


def test_last_fire_at_or_before() -> None:
    daily = crontab(minute=0, hour=3)
    since = utc(2026, 5, 1, 3)
    assert daily.last_at_or_before(utc(2026, 5, 5, 12), since, "UTC") == utc(2026, 5, 5, 3)
    assert daily.last_at_or_before(utc(2026, 5, 1, 4), since, "UTC") == since
    yearly = crontab(0, 0, day_of_month=1, month_of_year=1)
    assert yearly.last_at_or_before(utc(2031, 6, 1), utc(2027, 1, 1), "UTC") == utc(2031, 1, 1)


# -- daylight saving time -------------------------------------------------------------------
def test_daily_0230_berlin_on_the_spring_forward_day_2026_03_29() -> None:
    # Clocks go 02:00 CET -> 03:00 CEST: 02:30 does not exist that day.
    found = fires(crontab(minute=30, hour=2), utc(2026, 3, 27), utc(2026, 3, 31))
    assert found == [
        utc(2026, 3, 27, 1, 30),  # 02:30 CET
        utc(2026, 3, 28, 1, 30),  # 02:30 CET
        utc(2026, 3, 29, 1, 0),   # 03:00 CEST, when the skipped hour ends: once
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
    ]


def test_daily_0230_berlin_on_the_fall_back_day_2026_10_25() -> None:
    # Clocks go 03:00 CEST -> 02:00 CET: 02:30 happens twice that day; the job runs once.
    found = fires(crontab(minute=30, hour=2), utc(2026, 10, 23), utc(2026, 10, 27))
    assert found == [
        utc(2026, 10, 23, 0, 30),
        utc(2026, 10, 24, 0, 30),
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST, first occurrence only
        utc(2026, 10, 26, 1, 30),  # 02:30 CET
    ]


def test_starting_in_the_repeated_hour_does_not_fire_the_daily_job_again() -> None:
    inside_second_pass = utc(2026, 10, 25, 1, 10)  # 02:10 CET, after 02:30 CEST fired
    assert crontab(minute=30, hour=2).next_after(inside_second_pass, BERLIN) == \
        utc(2026, 10, 26, 1, 30)


def test_a_daily_job_runs_once_every_local_day_of_2026() -> None:
    found = fires(crontab(minute=30, hour=2), utc(2025, 12, 31, 12), utc(2026, 12, 31, 12))
    days = [d.astimezone(ZoneInfo(BERLIN)).date() for d in found]
    assert len(found) == 365 and len(set(days)) == 365


@pytest.mark.parametrize(("day", "hours"), [("2026-03-29", 23), ("2026-10-25", 25)])
def test_sub_hourly_jobs_follow_elapsed_time_through_dst(day: str, hours: int) -> None:
    local_midnight = datetime.fromisoformat(day).replace(tzinfo=ZoneInfo(BERLIN))
    start = local_midnight.astimezone(UTC) - timedelta(microseconds=1)
    end = (local_midnight + timedelta(days=1)).astimezone(UTC) - timedelta(microseconds=1)
    quarter = fires(crontab(minute="*/15"), start, end)
    hourly = fires(crontab(minute=0), start, end)
    assert len(quarter) == hours * 4 and len(hourly) == hours
    gaps = {b - a for a, b in zip(quarter, quarter[1:], strict=False)}
    assert gaps == {timedelta(minutes=15)}  # every 15 real minutes, repeated hour too


def test_new_york_transitions_2026() -> None:
    # 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST.
    spring = fires(crontab(minute=30, hour=2), utc(2026, 3, 7), utc(2026, 3, 9, 12),
                   "America/New_York")
    assert spring == [utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)]
    fall = fires(crontab(minute=30, hour=1), utc(2026, 10, 31), utc(2026, 11, 2, 12),
                 "America/New_York")
    assert fall == [utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]


def test_half_hour_dst_shift_lord_howe() -> None:
    # Australia/Lord_Howe moves by 30 minutes (2026-04-05 02:00 +11 -> 01:30 +10:30).
    found = fires(crontab(minute="*/10"), utc(2026, 4, 4, 14, 0), utc(2026, 4, 4, 16, 0),
                  "Australia/Lord_Howe")
    gaps = {b - a for a, b in zip(found, found[1:], strict=False)}
    assert gaps == {timedelta(minutes=10)} and len(found) == 12
