"""Pickle (and every serializer but JSON) is refused wherever Celery lets one name it,
with the same one-line message, before any I/O."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pgqueue import App, Task
from pgqueue.exceptions import ConfigurationError

PG_URL = "postgresql://u@db.invalid:5432/app"  # never connected to: checks come first
MESSAGE = "is refused: pgqueue stores arguments and results as JSON (jsonb), never pickle"


@pytest.fixture
def app() -> App:
    application = App("proj", dsn=PG_URL, set_as_current=False)

    @application.task(name="echo")
    def echo(*args: Any) -> Any:
        return args

    return application


def refused(action: Callable[[], Any], *words: str) -> None:
    with pytest.raises((TypeError, ValueError, ConfigurationError)) as caught:
        action()
    message = str(caught.value)
    assert "\n" not in message and MESSAGE in message, message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("value", ["pickle", "yaml", "msgpack", "PICKLE", 3])
def test_send_options(app: App, value: Any) -> None:
    echo = app.tasks["echo"]
    for send in (lambda: echo.apply_async((1,), serializer=value),
                 lambda: app.send_task("echo", (1,), serializer=value),
                 lambda: echo.apply_many([(1,), (2,)], serializer=value),
                 lambda: echo.s(1).set(serializer=value).delay()):
        refused(send, "serializer", repr(value))


def test_the_task_decorator_and_annotations(app: App) -> None:
    refused(lambda: app.task(name="p", serializer="pickle")(lambda: None), "serializer")
    refused(lambda: app.conf.update(task_annotations={"echo": {"serializer": "pickle"}}),
            "task_annotations")


def test_a_hand_written_task_class_is_refused_when_sent(app: App) -> None:
    class Pickled(Task):
        serializer = "pickle"

    task = app.task(name="base", base=Pickled)(lambda: None)
    refused(task.delay, "base: serializer")
    app.tasks["echo"].serializer = "pickle"
    refused(app.tasks["echo"].delay, "echo: serializer")


@pytest.mark.parametrize(("setting", "value"), [
    ("task_serializer", "pickle"),
    ("result_serializer", "pickle"),
    ("accept_content", ["json", "pickle"]),
    ("accept_content", ["application/x-python-serialize"]),
    ("CELERY_TASK_SERIALIZER", "pickle"),
    ("CELERY_ACCEPT_CONTENT", ["pickle"]),
])
def test_settings(app: App, setting: str, value: Any) -> None:
    refused(lambda: app.conf.update({setting: value}))
    refused(lambda: App("p", dsn=PG_URL, set_as_current=False, config_source={setting: value}))


@pytest.mark.parametrize(("setting", "value"), [
    ("task_serializer", "json"), ("result_serializer", "json"),
    ("accept_content", ["json"]), ("accept_content", ["application/json", "json"]),
])
def test_json_is_accepted(app: App, setting: str, value: Any) -> None:
    app.conf.update({setting: value})
    assert app.conf[setting] == value
