"""Defining tasks: options, Celery's import paths, and checks made before any I/O."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import pytest

import pgqueue
from pgqueue import App, Task, shared_task
from pgqueue.task import exponential_backoff

PG_URL = "postgresql://u@db.invalid:5432/app"  # never connected to in these tests


@pytest.fixture
def app() -> App:
    return App("proj", dsn=PG_URL, set_as_current=False)


def test_unknown_task_option_raises_at_decoration_naming_the_nearest(app: App) -> None:
    with pytest.raises(TypeError) as error:

        @app.task(max_retry=3)
        def add(x: int, y: int) -> int:
            return x + y

    message = str(error.value)
    assert "unknown task option 'max_retry'" in message
    assert "did you mean 'max_retries'" in message
    assert "add" in message  # names the function being decorated


@pytest.mark.parametrize(("typo", "meant"), [
    ("autoretry", "autoretry_for"), ("retry_backof", "retry_backoff"),
    ("ignore_results", "ignore_result"), ("track_start", "track_started"),
    ("soft_timelimit", "soft_time_limit"), ("default_retry_dely", "default_retry_delay"),
])
def test_typos_of_each_option_get_a_hint(app: App, typo: str, meant: str) -> None:
    options: dict[str, Any] = {typo: 1}
    with pytest.raises(TypeError, match=f"did you mean '{meant}'"):
        app.task(None, **options)(lambda: None)


def test_every_celery_option_of_the_issue_is_accepted(app: App) -> None:
    @app.task(name="custom.name", bind=True, queue="q", priority=7, max_retries=5,
              default_retry_delay=2, autoretry_for=(KeyError,), dont_autoretry_for=(OSError,),
              retry_backoff=2, retry_backoff_max=30, retry_jitter=False, ignore_result=True,
              expires=60, time_limit=10, soft_time_limit=5, track_started=True)
    def job(self: Task) -> None:
        return None

    assert app.tasks["custom.name"] is job
    assert (job.queue, job.priority, job.max_retries, job.default_retry_delay) == ("q", 7, 5, 2)
    assert job.autoretry_for == (KeyError,) and job.dont_autoretry_for == (OSError,)
    assert (job.retry_backoff, job.retry_backoff_max, job.retry_jitter) == (2, 30, False)
    assert job.ignore_result is True and job.track_started is True
    assert (job.expires, job.time_limit, job.soft_time_limit) == (60, 10, 5)


def test_unsupported_option_says_so(app: App) -> None:
    with pytest.raises(TypeError, match="'throws' is not supported"):
        app.task(throws=(KeyError,))(lambda: None)


def test_priority_out_of_range_is_refused_at_decoration(app: App) -> None:
    with pytest.raises(ValueError, match="0 to 9"):
        app.task(priority=10)(lambda: None)


def test_plain_decorator_and_default_name(app: App) -> None:
    @app.task
    def multiply(x: int, y: int) -> int:
        return x * y

    assert multiply.name == f"{__name__}.multiply"
    assert app.tasks[multiply.name] is multiply
    assert multiply(6, 7) == 42  # calling runs the function here, as in Celery
    assert multiply.__doc__ is None
    assert multiply.__wrapped__.__name__ == "multiply"  # type: ignore[attr-defined]


def test_bind_gives_the_task_as_self(app: App) -> None:
    @app.task(bind=True)
    def whoami(self: Task) -> str:
        return self.name

    assert whoami() == whoami.name
    assert whoami.request.called_directly is True


def test_celery_alias_and_import_paths() -> None:
    from pgqueue import Celery
    from pgqueue.exceptions import (
        MaxRetriesExceededError,
        NotRegistered,
        Retry,
        SoftTimeLimitExceeded,
        TimeLimitExceeded,
        WorkerLostError,
    )
    from pgqueue.result import AsyncResult

    assert Celery is App
    assert pgqueue.AsyncResult is AsyncResult
    for exc in (MaxRetriesExceededError, NotRegistered, Retry, SoftTimeLimitExceeded,
                TimeLimitExceeded, WorkerLostError):
        assert issubclass(exc, Exception)
    assert len(pgqueue.uuid()) == 36


def test_shared_task_joins_existing_and_future_apps() -> None:
    before = App("before", dsn=PG_URL, set_as_current=False)

    @shared_task(name="tests.unit.shared_double")  # type: ignore[untyped-decorator]
    def double(x: int) -> int:
        return 2 * x

    after = App("after", dsn=PG_URL)  # becomes current_app
    assert "tests.unit.shared_double" in before.tasks
    assert "tests.unit.shared_double" in after.tasks
    assert double(21) == 42  # the proxy calls the current app's task
    assert double.name == "tests.unit.shared_double"


def test_shared_task_plain_decorator() -> None:
    @shared_task
    def triple(x: int) -> int:
        return 3 * x

    app = App("later", dsn=PG_URL)
    assert app.tasks[f"{__name__}.triple"](2) == 6


def test_unknown_apply_async_option_suggests_the_nearest(app: App) -> None:
    @app.task
    def noop() -> None:
        return None

    with pytest.raises(TypeError) as error:
        noop.apply_async(countdwn=5)
    assert "unknown apply_async option 'countdwn'" in str(error.value)
    assert "did you mean 'countdown'" in str(error.value)
    with pytest.raises(TypeError, match="did you mean 'priority'"):
        app.send_task("anything", priorty=3)


def test_send_options_are_validated_before_any_io(app: App) -> None:
    @app.task
    def noop() -> None:
        return None

    with pytest.raises(ValueError, match="0 to 9"):
        noop.apply_async(priority=12)
    with pytest.raises(ValueError, match="countdown or eta, not both"):
        noop.apply_async(countdown=1, eta=datetime.now().astimezone())
    with pytest.raises(TypeError, match="args must be a list or tuple"):
        noop.apply_async(args="abc")


def test_non_json_argument_names_task_and_argument(app: App) -> None:
    @app.task
    def store(a: object, b: object = None) -> None:
        return None

    with pytest.raises(TypeError) as error:
        store.delay(1, object())
    message = str(error.value)
    assert store.name in message and "argument 1 (object)" in message
    with pytest.raises(TypeError, match=r"keyword argument 'b' \(set\)"):
        store.delay(1, b={1, 2})
    with pytest.raises(TypeError, match=r"argument 0 \(datetime\)"):
        store.apply_many([((1,), {}), ((datetime.now(),), {})])


@pytest.mark.parametrize("retries", range(6))
def test_backoff_without_jitter_is_factor_times_two_to_the_retries(retries: int) -> None:
    assert exponential_backoff(3, retries, 600, full_jitter=False) == 3 * 2**retries


def test_backoff_is_capped_and_jitter_stays_below_the_cap() -> None:
    assert exponential_backoff(1, 20, 600, full_jitter=False) == 600
    rng_state = random.getstate()
    try:
        values = [exponential_backoff(1, 4, 600, full_jitter=True) for _ in range(200)]
    finally:
        random.setstate(rng_state)
    assert all(0 <= v <= 16 for v in values)
    assert len(set(values)) > 1


def test_autoretry_countdown_follows_retry_options(app: App) -> None:
    @app.task(retry_backoff=True, retry_jitter=False, retry_backoff_max=5)
    def flaky() -> None:
        return None

    assert flaky.autoretry_countdown() == 1  # retries=0 outside a worker

    @app.task(default_retry_delay=7)
    def plain() -> None:
        return None

    assert plain.autoretry_countdown() == 7

    @app.task(retry_kwargs={"countdown": 3}, retry_backoff=True)
    def fixed() -> None:
        return None

    assert fixed.autoretry_countdown() == 3


def test_expires_accepts_seconds_timedelta_and_datetime(app: App) -> None:
    from pgqueue.client.producer import JobBuilder

    builder = JobBuilder(app, "t", None, {"expires": 30})
    assert builder.expires_at is not None
    assert abs((builder.expires_at - builder.now) - timedelta(seconds=30)) < timedelta(
        milliseconds=1)
    builder = JobBuilder(app, "t", None, {"expires": timedelta(minutes=1)})
    assert builder.expires_at == builder.now + timedelta(minutes=1)


def test_apply_runs_here_with_a_request_and_retries(app: App) -> None:
    @app.task(bind=True, max_retries=3)
    def eager(self: Task, x: int) -> dict[str, Any]:
        if self.request.retries < 2:
            raise self.retry(countdown=60)
        return {"x": x, "retries": self.request.retries, "eager": self.request.is_eager}

    result = eager.apply((5,), task_id="fixed-id")
    assert result.id == "fixed-id"
    assert result.state == "SUCCESS" and result.successful()
    assert result.get() == {"x": 5, "retries": 2, "eager": True}


def test_apply_of_a_failing_task(app: App) -> None:
    @app.task
    def broken() -> None:
        raise LookupError("gone")

    result = broken.apply()
    assert result.state == "FAILURE" and result.failed()
    with pytest.raises(LookupError, match="gone"):
        result.get()
    assert "LookupError: gone" in (result.traceback or "")


def test_task_always_eager_runs_delay_in_process(app: App) -> None:
    app.conf.task_always_eager = True

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    assert add.delay(2, 3).get() == 5
