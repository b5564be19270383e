"""Schedules defined in code, Celery's three ways, checked at definition (no database)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from pgqueue import Celery, ConfigurationError
from pgqueue.client.periodic import code_entries, make_entry
from pgqueue.schedules import crontab, schedule

URL = "postgresql://u@db.invalid:5432/app"


@pytest.fixture
def app() -> Celery:
    return Celery("tasks", broker=URL, set_as_current=False)


def by_name(app: Celery) -> dict[str, Any]:
    return {e.name: e for e in code_entries(app)}


def test_celery_beat_schedule_dict(app: Celery) -> None:
    @app.task(name="tasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    # As in Celery's documentation, imports and URL aside.
    app.conf.beat_schedule = {
        "add-every-monday-morning": {
            "task": "tasks.add",
            "schedule": crontab(hour=7, minute=30, day_of_week=1),
            "args": (16, 16),
        },
        "add-every-30-seconds": {"task": "tasks.add", "schedule": 30.0, "args": (16, 16)},
        "add-every-minute": {"task": "tasks.add", "schedule": timedelta(minutes=1),
                             "kwargs": {"x": 1, "y": 2}, "options": {"queue": "math"}},
    }
    app.conf.timezone = "Europe/Berlin"
    entries = by_name(app)
    monday = entries["add-every-monday-morning"]
    assert monday.schedule.cron == "30 7 * * 1"
    assert (monday.task, monday.args, monday.timezone) == ("tasks.add", [16, 16],
                                                           "Europe/Berlin")
    assert entries["add-every-30-seconds"].schedule == schedule(30)
    minute = entries["add-every-minute"]
    assert (minute.schedule.seconds, minute.kwargs, minute.options) == (
        60, {"x": 1, "y": 2}, {"queue": "math"})
    assert minute.catch_up is True


def test_add_periodic_task_in_on_after_configure(app: Celery) -> None:
    @app.on_after_configure.connect
    def setup_periodic_tasks(sender: Celery, **kwargs: Any) -> None:
        sender.add_periodic_task(10.0, test.s("hello"), name="add every 10")
        sender.add_periodic_task(30.0, test.s("hello"), name="add every 30")
        sender.add_periodic_task(30.0, test.s("world"), expires=10)
        sender.add_periodic_task(crontab(hour=7, minute=30, day_of_week=1),
                                 test.s("Happy Mondays!"))

    @app.task
    def test(arg: str) -> None:
        print(arg)

    assert app.periodic_tasks == []  # nothing until the app is finalized
    entries = by_name(app)
    name = test.name
    assert set(entries) == {"add every 10", "add every 30", f"{name}('world')",
                            f"{name}('Happy Mondays!')"}
    assert entries["add every 10"].schedule == schedule(10)
    assert entries["add every 10"].args == ["hello"]
    assert entries[f"{name}('world')"].options == {"expires": 10}
    assert entries[f"{name}('Happy Mondays!')"].schedule == crontab(30, 7, 1)


def test_add_periodic_task_with_the_same_signature_and_no_name_replaces(app: Celery) -> None:
    @app.task
    def ping() -> None: ...

    app.add_periodic_task(10, ping.s())
    app.add_periodic_task(20, ping.s())
    assert [(s["name"], s["schedule"]) for s in app.periodic_tasks] == [(repr(ping.s()), 20)]


def test_add_periodic_task_accepts_a_task_args_and_pgqueue_options(app: Celery) -> None:
    @app.task
    def greet(greeting: str, name: str) -> str:
        return f"{greeting} {name}"

    app.add_periodic_task(crontab(minute=0, hour=6), greet, args=("hi",),
                          kwargs={"name": "ada"}, name="morning", timezone="Asia/Tokyo",
                          catch_up=False, queue="mail")
    entry = by_name(app)["morning"]
    assert (entry.args, entry.kwargs, entry.options) == (["hi"], {"name": "ada"},
                                                         {"queue": "mail"})
    assert (entry.timezone, entry.catch_up) == ("Asia/Tokyo", False)


@pytest.mark.parametrize(("options", "error", "fragment"), [
    ({"prioritty": 1}, TypeError, "unknown option 'prioritty'; did you mean 'priority'?"),
    ({"task_id": "x"}, ValueError, "option 'task_id' cannot be used on a schedule"),
    ({"eta": 1}, ValueError, "use countdown"),
    ({"exchange": "x"}, TypeError, "option 'exchange' is not supported: pgqueue has no "
                                   "exchanges; name the queue with queue="),
    ({"timezone": "Mars/Olympus"}, ValueError, "unknown time zone 'Mars/Olympus'"),
    ({"catch_up": "yes"}, TypeError, "'catch_up' must be True or False"),
])
def test_add_periodic_task_refuses_bad_input_at_once(app: Celery, options: dict[str, Any],
                                                     error: type[Exception],
                                                     fragment: str) -> None:
    @app.task
    def ping() -> None: ...

    with pytest.raises(error) as raised:
        app.add_periodic_task(10, ping.s(), name="p", **options)
    assert fragment in str(raised.value)
    assert app.periodic_tasks == []


def test_add_periodic_task_refuses_a_non_signature(app: Celery) -> None:
    with pytest.raises(TypeError, match=r"mytask.s\(1, 2\)"):
        app.add_periodic_task(10, "tasks.ping")


def test_periodic_decorator(app: Celery) -> None:
    @app.periodic(cron="0 6 * * 4", timezone="Europe/Paris", queue="reports")
    def weekly_report() -> str:
        return "done"

    @app.periodic(every=timedelta(seconds=30), name="heartbeat")
    def beat_heart() -> None: ...

    assert weekly_report() == "done"  # still the task, callable
    assert weekly_report.queue == "reports"
    entries = by_name(app)
    report = entries[weekly_report.name]
    assert (report.task, report.schedule.cron, report.timezone) == (
        weekly_report.name, "0 6 * * 4", "Europe/Paris")
    assert entries["heartbeat"].schedule == schedule(30)
    assert "heartbeat" in app.tasks


@pytest.mark.parametrize(("kwargs", "error", "fragment"), [
    ({}, TypeError, "exactly one of cron="),
    ({"cron": "0 6 * *"}, ValueError, "must have 5 fields"),
    ({"cron": "61 6 * * *"}, ValueError, "61 is out of range 0-59"),
    ({"cron": 30}, TypeError, "use every= for intervals"),
    ({"every": 0}, ValueError, "must be positive"),
    ({"every": 5, "timezone": "Europe/Berln"}, ValueError, "did you mean 'Europe/Berlin'"),
    ({"every": 5, "bogus": 1}, TypeError, "unknown task option 'bogus'"),
])
def test_periodic_decorator_refuses_bad_input_without_registering(
        app: Celery, kwargs: dict[str, Any], error: type[Exception], fragment: str) -> None:
    with pytest.raises(error) as raised:
        @app.periodic(**kwargs)
        def job() -> None: ...
    assert fragment in str(raised.value)
    assert not [n for n in app.tasks if n.endswith(".job")]
    assert app.periodic_tasks == []


def test_unknown_task_in_beat_schedule_is_refused_with_a_suggestion(app: Celery) -> None:
    @app.task(name="tasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    app.conf.beat_schedule = {"sum": {"task": "tasks.ad", "schedule": 5}}
    with pytest.raises(ConfigurationError, match="periodic task 'sum': no task named "
                                                 "'tasks.ad' is registered; did you mean "
                                                 "'tasks.add'"):
        code_entries(app)


@pytest.mark.parametrize(("spec", "fragment"), [
    ({"task": "t", "shedule": 5}, "unknown key 'shedule'; did you mean 'schedule'?"),
    ({"task": "t"}, "'schedule' is missing"),
    ({"schedule": 5}, "'task' must be a task name"),
    ({"task": "t", "schedule": "every day"}, "must have 5 fields"),
    ({"task": "t", "schedule": 5, "args": "x"}, "'args' must be a list or tuple"),
    ({"task": "t", "schedule": 5, "kwargs": {"when": object()}}, "not JSON-serializable"),
    ({"task": "t", "schedule": 5, "options": {"priority": 12}}, "priority must be"),
])
def test_bad_beat_schedule_items_stop_the_scheduler_at_start(app: Celery, spec: dict[str, Any],
                                                             fragment: str) -> None:
    @app.task(name="t")
    def t() -> None: ...

    app.conf.beat_schedule = {"bad": spec}
    with pytest.raises(ConfigurationError) as raised:
        code_entries(app)
    assert "periodic task 'bad'" in str(raised.value)
    assert fragment in str(raised.value)


def test_bad_app_time_zone_is_refused(app: Celery) -> None:
    app.conf.timezone = "Europe/Berln"
    with pytest.raises(ConfigurationError, match="setting 'timezone': unknown time zone"):
        code_entries(app)


def test_time_zone_precedence() -> None:
    default = {"timezone": "UTC"}
    assert make_entry("a", {"task": "t", "schedule": crontab()}, **default).timezone == "UTC"
    assert make_entry("b", {"task": "t", "schedule": crontab(), "timezone": "Asia/Tokyo"},
                      **default).timezone == "Asia/Tokyo"
    own = crontab(tz="Europe/Berlin")
    assert make_entry("c", {"task": "t", "schedule": own, "timezone": "Asia/Tokyo"},
                      **default).timezone == "Europe/Berlin"


def test_beat_catch_up_setting_is_the_default(app: Celery) -> None:
    @app.task(name="t")
    def t() -> None: ...

    app.conf.beat_catch_up = False
    app.conf.beat_schedule = {"a": {"task": "t", "schedule": 5},
                              "b": {"task": "t", "schedule": 5, "catch_up": True}}
    entries = by_name(app)
    assert (entries["a"].catch_up, entries["b"].catch_up) == (False, True)


# Names `pgqueue schedule run-now|enable|disable` and the dashboard refuse: a schedule
# made under one could never be managed.
HOSTILE_NAMES = [
    ("x" * 201, "1 to 200 characters", "(201 characters)"),
    ("night\nly", "without control characters", r"'night\nly'"),
    ("\x1b[31mred", "without control characters", r"'\x1b[31mred'"),
    ("", "1 to 200 characters", "got ''"),
    (7, "must be a string", "got 7"),
]


@pytest.mark.parametrize(("name", "rule", "shown"), HOSTILE_NAMES)
def test_beat_schedule_name_no_operator_could_manage_stops_the_scheduler_at_start(
        app: Celery, name: Any, rule: str, shown: str) -> None:
    @app.task(name="t")
    def t() -> None: ...

    app.conf.beat_schedule = {"fine": {"task": "t", "schedule": 5},
                              name: {"task": "t", "schedule": 5}}
    with pytest.raises(ConfigurationError) as raised:
        code_entries(app)
    message = str(raised.value)
    assert message.startswith("schedule name must be a string of 1 to 200 characters")
    assert rule in message and shown in message
    assert "\n" not in message and len(message) < 200


@pytest.mark.parametrize(("name", "rule", "shown"), [n for n in HOSTILE_NAMES if n[0]])
def test_add_periodic_task_refuses_a_name_no_operator_could_manage(
        app: Celery, name: Any, rule: str, shown: str) -> None:
    @app.task
    def ping() -> None: ...

    with pytest.raises(ValueError) as raised:
        app.add_periodic_task(10, ping.s(), name=name)
    assert rule in str(raised.value) and shown in str(raised.value)
    assert "\n" not in str(raised.value)
    assert app.periodic_tasks == []


def test_add_periodic_task_without_a_name_refuses_a_signature_too_long_to_name_it(
        app: Celery) -> None:
    @app.task(name="tasks.echo")
    def echo(text: str) -> None: ...

    with pytest.raises(ValueError) as raised:
        app.add_periodic_task(10, echo.s("x" * 300))
    message = str(raised.value)
    assert message.startswith("add_periodic_task: without name=, the schedule is named "
                              "after its signature, \"tasks.echo('xxx")
    assert "(314 characters)" in message and "pass name='...'" in message
    assert app.periodic_tasks == []
    assert app.add_periodic_task(10, echo.s("x" * 300), name="echo") == "echo"
    assert app.add_periodic_task(10, echo.s("short")) == "tasks.echo('short')"


def test_periodic_decorator_under_a_name_too_long_is_refused_at_definition(
        app: Celery) -> None:
    # The schedule takes the task's name, which @app.task already holds to the same rule.
    with pytest.raises(ValueError, match="name must be a string of 1 to 200 characters"):
        @app.periodic(every=5, name="tasks." + "x" * 200)
        def job() -> None: ...
    assert app.periodic_tasks == []


def test_make_entry_takes_the_longest_name_an_operator_can_manage() -> None:
    longest = "é" * 200
    assert make_entry(longest, {"task": "t", "schedule": 5}).name == longest
