"""``worker_log_format`` and ``worker_hijack_root_logger`` as `pgqueue worker` and `beat`
apply them once the app is imported (``cli.logs.hand_over``)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from pgqueue import App
from pgqueue.cli import logs


@pytest.fixture
def root() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    """The root logger as the command leaves it before the app is imported: its handler
    first, and the level the command set."""
    logger = logging.getLogger()
    saved, level = logger.handlers[:], logger.level
    stream = io.StringIO()
    ours = logging.StreamHandler(stream)
    ours.setFormatter(logging.Formatter("[command] %(message)s"))
    logger.handlers = [ours]
    logger.setLevel(logging.INFO)
    yield logger, stream, ours
    logger.handlers = saved
    logger.setLevel(level)


def handlers(logger: logging.Logger) -> list[logging.Handler]:
    """The root logger's handlers, without those pytest adds around each test."""
    return [h for h in logger.handlers if not type(h).__module__.startswith("_pytest")]


def new_app(**settings: object) -> App:
    return App("logs", set_as_current=False, **settings)  # type: ignore[arg-type]


def test_worker_log_format_formats_the_lines(
        root: tuple[logging.Logger, io.StringIO, logging.Handler]) -> None:
    logger, stream, _ = root
    app = new_app()
    app.conf.worker_log_format = "FMT %(levelname)s %(name)s: %(message)s"
    logs.hand_over("info", app.conf)
    logging.getLogger("pgqueue.worker").info("Task t[1] succeeded")
    assert stream.getvalue() == "FMT INFO pgqueue.worker: Task t[1] succeeded\n"


@pytest.mark.parametrize(("value", "words"), [
    ("%(no_such_field)s", "'no_such_field'"),
    ("%(message", "not a logging format"),
    (42, "a string, not 42"),
])
def test_a_log_format_that_cannot_format_a_line_is_refused_when_set(value: object,
                                                                    words: str) -> None:
    from pgqueue import ConfigurationError

    with pytest.raises(ConfigurationError) as caught:
        new_app().conf.worker_log_format = value
    assert words in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).startswith("setting 'worker_log_format' is not a logging format")


def test_the_commands_format_stays_when_the_setting_is_not_set(
        root: tuple[logging.Logger, io.StringIO, logging.Handler]) -> None:
    logger, stream, _ = root
    logs.hand_over("info", new_app().conf)
    logging.getLogger("pgqueue.worker").info("hello")
    assert stream.getvalue() == "[command] hello\n"


def test_hijack_root_logger_false_keeps_the_apps_handlers(
        root: tuple[logging.Logger, io.StringIO, logging.Handler]) -> None:
    logger, stream, ours = root
    theirs_stream = io.StringIO()
    theirs = logging.StreamHandler(theirs_stream)  # what the app's import configured
    logger.addHandler(theirs)
    app = new_app()
    app.conf.worker_hijack_root_logger = False
    logs.hand_over("info", app.conf)
    assert handlers(logger) == [theirs]
    logging.getLogger("proj").warning("from the app")
    assert theirs_stream.getvalue() == "from the app\n" and stream.getvalue() == ""


def test_hijack_root_logger_true_keeps_pgqueues_handler_alone(
        root: tuple[logging.Logger, io.StringIO, logging.Handler]) -> None:
    logger, stream, ours = root
    logger.addHandler(logging.StreamHandler(io.StringIO()))
    logs.hand_over("info", new_app().conf)  # True is the default, as in Celery
    assert handlers(logger) == [ours]
