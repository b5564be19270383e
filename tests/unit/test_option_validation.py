"""Every option value that could later break a statement or a claim is refused where it
enters: one line naming the option and the allowed range, before any I/O."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgqueue import App
from pgqueue.client.periodic import code_entries
from pgqueue.client.producer import build_rows
from pgqueue.exceptions import ConfigurationError
from pgqueue.limits import decode_job, depth_over, text_depth_over
from pgqueue.utils import json_dumps

PG_URL = "postgresql://u@db.invalid:5432/app"  # never connected to: checks come first
UUID = "0190f5c2-52a1-7d6e-8b1f-3c2d4e5f6a7b"


@pytest.fixture
def app() -> App:
    application = App("proj", dsn=PG_URL, set_as_current=False)

    @application.task(name="echo")
    def echo(*args: Any, **kwargs: Any) -> Any:
        return args

    return application


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


SECONDS = "above 0 and at most 31,536,000"
DELAY = "from -3,162,240,000 to 3,162,240,000"
NAME = "1 to 200 characters without control characters"

# (option, bad value, words the message must hold besides the option's name)
BAD_OPTIONS: list[tuple[str, Any, str]] = [
    *[(option, value, SECONDS)
      for option in ("time_limit", "soft_time_limit", "lease")
      for value in (1e13, 1e300, math.nan, math.inf, -1, 0, "abc", True, 31_536_001)],
    *[("countdown", value, DELAY) for value in (math.nan, math.inf, -math.inf, 1e13, True)],
    ("countdown", "10", DELAY),
    *[("expires", value, DELAY)
      for value in (math.nan, math.inf, 1e13, timedelta(days=999_999_999))],
    ("expires", "tomorrow", "seconds, a timedelta or a datetime"),
    ("eta", "2030-01-01", "must be a datetime"),
    ("eta", 1700000000, "must be a datetime"),
    *[("priority", value, "integer from 0 to 9") for value in (True, False, -1, 10, 1.5, "5")],
    *[("max_retries", value, "integer from 0 to 2,147,483,647")
      for value in (True, -1, 2**31, 2**40, 1.0, "3")],
    *[("queue", value, NAME)
      for value in ("", "x" * 201, "x" * 9000, "a\x00b", "a\nb", "\ud800", 7)],
    ("unique_key", "k" * 501, "1 to 500 characters"),
    ("unique_key", "a\x00", "1 to 500 characters"),
    *[(option, value, "1 to 500 characters without NUL")
      for option in ("task_id", "parent_id", "root_id", "group_id")
      for value in ("a\x00b", 5, "", "x" * 501, "\ud800")],
]


def one_line(error: BaseException, *words: str) -> str:
    message = str(error)
    assert "\n" not in message and len(message) < 300, message
    for word in words:
        assert word in message, message
    return message


@pytest.mark.parametrize(("option", "value", "words"), BAD_OPTIONS,
                         ids=[f"{o}={v!r:.20}" for o, v, _ in BAD_OPTIONS])
def test_each_send_path_refuses_the_value(app: App, option: str, value: Any,
                                          words: str) -> None:
    echo = app.tasks["echo"]
    sends = [
        lambda: echo.apply_async((1,), **{option: value}),
        lambda: app.send_task("echo", (1,), **{option: value}),
        lambda: echo.s(1).set(**{option: value}).apply_async(),
        lambda: echo.signature((1,), **{option: value}).delay(),
    ]
    if option not in ("task_id", "unique_key"):  # these cannot be shared by many jobs
        sends.append(lambda: echo.apply_many([(1,), (2,)], **{option: value}))
    for send in sends:
        with pytest.raises((ValueError, TypeError)) as error:
            send()
        one_line(error.value, option, words)


@pytest.mark.parametrize(("option", "value", "words"), [
    (o, v, w) for o, v, w in BAD_OPTIONS
    if o in ("time_limit", "soft_time_limit", "lease", "priority", "max_retries", "queue",
             "expires")])
def test_the_task_decorator_refuses_the_value(app: App, option: str, value: Any,
                                              words: str) -> None:
    with pytest.raises((ValueError, TypeError)) as error:
        app.task(name="t", **{option: value})(lambda: None)
    one_line(error.value, option, words)


@pytest.mark.parametrize("value", ["", "x" * 201, "a\x00b", "tab\there"])
def test_task_names_are_checked(app: App, value: str) -> None:
    with pytest.raises(ValueError) as error:
        app.send_task(value)
    one_line(error.value, "task name", NAME)
    with pytest.raises(ValueError) as error:
        app.task(name=value)(lambda: None)
    one_line(error.value, "name", NAME)


def test_the_task_attributes_of_a_hand_written_class_are_checked_when_sent(app: App) -> None:
    echo = app.tasks["echo"]
    echo.priority = True  # type: ignore[assignment]
    with pytest.raises(ValueError) as error:
        echo.delay()
    one_line(error.value, "priority", "0 to 9")


@pytest.mark.parametrize(("setting", "value", "words"), [
    ("task_default_priority", True, "0 to 9"),
    ("task_default_max_retries", 2**40, "2,147,483,647"),
    ("task_default_queue", "", NAME),
    ("task_default_queue", None, NAME),
    ("task_time_limit", 1e13, SECONDS),
    ("task_soft_time_limit", math.nan, SECONDS),
    ("task_default_retry_delay", math.inf, DELAY),
    ("worker_lease_seconds", 1e300, SECONDS),
    ("task_max_args_bytes", 0, "1 to 209,715,200"),
    ("task_max_args_bytes", None, "1 to 209,715,200"),
    ("task_max_args_depth", 501, "1 to 500"),
    ("task_max_args_depth", True, "1 to 500"),
])
def test_settings_are_checked_when_set(app: App, setting: str, value: Any,
                                       words: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        app.conf[setting] = value
    one_line(error.value, setting, words)


def test_limits_that_mean_no_limit_still_accept_none(app: App) -> None:
    app.conf.task_time_limit = None
    app.conf.task_default_max_retries = None
    assert app.tasks["echo"].max_retries == 3


def test_routes_are_checked(app: App) -> None:
    app.conf.task_routes = {"echo": {"queue": "q", "priority": 11}}
    with pytest.raises(ValueError) as error:
        app.tasks["echo"].delay()
    one_line(error.value, "task_routes", "priority", "0 to 9")


def test_beat_schedule_options_are_checked_at_start(app: App) -> None:
    app.conf.beat_schedule = {"every-minute": {
        "task": "echo", "schedule": 60, "options": {"time_limit": 1e13}}}
    with pytest.raises(ConfigurationError) as error:
        code_entries(app)
    one_line(error.value, "every-minute", "time_limit", SECONDS)


def test_out_of_range_datetimes_are_named(app: App) -> None:
    app.conf.timezone = "Asia/Tokyo"  # a naive datetime is read in the app's zone, as before
    for option in ("eta", "expires"):
        with pytest.raises(ValueError) as error:
            app.tasks["echo"].apply_async(**{option: datetime(1, 1, 1)})
        one_line(error.value, option, "out of range")


def test_edges_of_each_range_are_accepted(app: App) -> None:
    batch = build_rows(app, "echo", app.tasks["echo"], [((deep(100),), {"k": "x" * 1000})], {
        "time_limit": 31_536_000, "soft_time_limit": 0.001, "lease": 31_536_000,
        "countdown": 3_162_240_000, "expires": -3_162_240_000, "priority": 9,
        "max_retries": 2**31 - 1, "queue": "q" * 200, "unique_key": "k" * 500,
        "task_id": UUID, "parent_id": UUID.upper(), "root_id": UUID, "group_id": UUID,
    }, pairs=True)
    params = batch.params()
    assert params["priority"] == 9 and params["max_retries"] == 2**31 - 1
    naive = datetime(2030, 1, 1, 12)
    shared = build_rows(app, "echo", None, [((), {})], {"eta": naive}).shared
    assert shared["run_at"] == naive.replace(tzinfo=timezone.utc).isoformat()


# -- arguments ----------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "kwargs", "words"), [
    ((deep(101),), {}, "argument 0 (list) nests lists and dicts more than 100 levels"),
    ((deep(5000),), {}, "argument 0 (list) nests lists and dicts more than 100 levels"),
    ((), {"tree": {"a": deep(120)}}, "keyword argument 'tree' (dict) nests"),
    (("a\x00b",), {}, "argument 0 (str) holds text PostgreSQL cannot store"),
    ((["ok", {"k": "\x00"}],), {}, "argument 0 (list) holds text"),
    ((), {"x": "\ud800"}, "keyword argument 'x' (str) holds text"),
    ((), {"a\x00": 1}, "keyword argument 'a\\x00' (int) holds text"),
    ((), {1: 1}, "keyword names must be strings, got 1"),
    ((object(),), {}, "argument 0 (object) is not JSON-serializable"),
    (("x" * (10 * 1024 * 1024),), {}, "over task_max_args_bytes (10,485,760)"),
    (("é" * (6 * 1024 * 1024),), {}, "over task_max_args_bytes (10,485,760)"),  # 2 bytes each
])
def test_arguments_a_worker_could_not_store_or_decode_are_named(
        app: App, args: tuple[Any, ...], kwargs: dict[Any, Any], words: str) -> None:
    echo = app.tasks["echo"]
    for send in (lambda: echo.apply_async(args, kwargs),
                 lambda: echo.apply_many([(args, kwargs), ((1,), {})])):
        with pytest.raises((ValueError, TypeError)) as error:
            send()
        one_line(error.value, "echo", words)


def test_argument_limits_are_settings(app: App) -> None:
    app.conf.task_max_args_depth = 3
    app.conf.task_max_args_bytes = 100
    echo = app.tasks["echo"]
    with pytest.raises(ValueError, match="more than 3 levels"):
        echo.delay(deep(4))
    with pytest.raises(ValueError, match="over task_max_args_bytes"):
        echo.delay("x" * 100)
    build_rows(app, "echo", echo, [((deep(3), "x" * 80), {})], {}, pairs=True).single_params()


# Strings full of what a bracket counter could trip on: brackets, quotes, backslashes.
_TRICKY = st.text(alphabet='[]{}"\\xé,:', max_size=6)
_JSON = st.recursive(st.none() | st.integers() | _TRICKY,
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(_TRICKY, inner, max_size=3), max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(_JSON, st.integers(min_value=0, max_value=12))
def test_the_depth_measured_on_the_text_is_the_depth_of_the_values(value: Any,
                                                                   limit: int) -> None:
    assert text_depth_over(json_dumps(value), limit) == depth_over([value], limit + 1)


def test_a_literal_backslash_u0000_is_plain_text(app: App) -> None:
    batch = build_rows(app, "echo", None, [(("\\u0000",), {})], {}, pairs=True)
    assert batch.single_params()["args"] == '["\\\\u0000"]'


# -- what a claim accepts from a row --------------------------------------------------------

@pytest.mark.parametrize(("args", "kwargs", "options", "words"), [
    ("[]", "{}", "[1]", "options must be a JSON object, got [1]"),
    ("[]", "{}", '"x"', "options must be a JSON object"),
    ("[]", "{}", "5", "options must be a JSON object"),
    ("{}", "{}", "{}", "args must be a JSON array"),
    ("[]", "[]", "{}", "kwargs must be a JSON object"),
    ("[]", "{}", '{"lease": "abc"}', "options.lease must be a number of seconds"),
    ("[]", "{}", '{"lease": 1e300}', "options.lease must be"),
    ("[]", "{}", '{"time_limit": "x"}', "options.time_limit must be"),
    ("[]", "{}", '{"soft_time_limit": -1}', "options.soft_time_limit must be"),
    ("[]", "{}", '{"eta": "junk"}', "options.eta must be an ISO 8601"),
    ("[]", "{}", '{"eta": 5}', "options.eta must be an ISO 8601"),
    ("[" * 100_000 + "]" * 100_000, "{}", "{}", "args: nested too deep to decode"),
    ("[" + "1" * 5000 + "]", "{}", "{}", "args cannot be decoded"),
])
def test_a_row_no_producer_wrote_has_its_fault_named(args: str, kwargs: str, options: str,
                                                    words: str) -> None:
    decoded = decode_job(args, kwargs, options)
    assert decoded[:3] == ([], {}, {})
    assert decoded[3] is not None and words in decoded[3]


def test_a_row_a_producer_wrote_decodes() -> None:
    options = '{"lease": 35.0, "time_limit": 30.0, "eta": "2030-01-01T00:00:00+00:00"}'
    assert decode_job('[1, [2]]', '{"k": null}', options) == (
        [1, [2]], {"k": None},
        {"lease": 35.0, "time_limit": 30.0, "eta": "2030-01-01T00:00:00+00:00"}, None)
