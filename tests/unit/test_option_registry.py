"""The registry of Celery's options and settings (pgqueue/celery_compat.py) is what the
code does: every implemented setting and task option is accepted and kept, every ignored
one is accepted with its reason, once, every refused one fails in one line naming the
alternative, the code's lists of accepted names are the registry's, and the table in
docs/migrating-from-celery.md is current. Send options are walked against a real database
in tests/integration/client/test_option_registry.py."""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pgqueue import App, Task, celery_compat, config
from pgqueue.celery_compat import IGNORED, IMPLEMENTED, MAPPED, REFUSED, Entry
from pgqueue.client import producer
from pgqueue.exceptions import ConfigurationError
from pgqueue.task import TASK_OPTIONS

ROOT = Path(__file__).resolve().parents[2]
TABLES = {"setting": celery_compat.SETTINGS, "task option": celery_compat.TASK_OPTIONS,
          "send option": celery_compat.SEND_OPTIONS}


def entries(table: dict[str, Entry], status: str) -> list[str]:
    return sorted(name for name, entry in table.items() if entry.status == status)


def new_app() -> App:
    return App("registry", set_as_current=False)


@pytest.fixture(autouse=True)
def fresh_warnings() -> Iterator[None]:
    """Ignored names warn once per process: each test sees its own first time."""
    config._warned.clear()
    celery_compat._warned.clear()
    yield
    config._warned.clear()
    celery_compat._warned.clear()


# -- the registry itself ---------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(TABLES))
def test_every_entry_is_complete(kind: str) -> None:
    for name, entry in TABLES[kind].items():
        assert entry.status in celery_compat.STATUSES, name
        assert entry.how.strip() and "\n" not in entry.how, name
        assert entry.origin in ("celery", "pgqueue"), name
        if entry.status == MAPPED:
            assert entry.to in config.DEFAULTS, name
        if entry.origin == "pgqueue":
            assert entry.status == IMPLEMENTED, name


def test_implemented_settings_are_exactly_the_settings_pgqueue_keeps() -> None:
    assert set(entries(celery_compat.SETTINGS, IMPLEMENTED)) == set(config.DEFAULTS)


def test_the_codes_lists_are_the_registrys() -> None:
    settings = celery_compat.SETTINGS
    assert celery_compat.reasons(settings, IGNORED) == config.CELERY_IGNORED
    assert celery_compat.reasons(settings, REFUSED) == config.UNSUPPORTED
    assert set(config.ALIASES) == set(entries(settings, MAPPED))
    assert set(config.known_names()) == set(settings)
    assert celery_compat.accepted(celery_compat.TASK_OPTIONS) == TASK_OPTIONS
    assert celery_compat.accepted(celery_compat.SEND_OPTIONS) == producer.SEND_OPTIONS


@pytest.mark.parametrize("kind", sorted(TABLES))
def test_each_named_test_exists(kind: str) -> None:
    for name, entry in TABLES[kind].items():
        if not entry.test:
            continue
        path, test = entry.test.split("::")
        assert f"def {test}(" in (ROOT / path).read_text(), f"{name}: {entry.test} is missing"


def test_the_doc_table_is_current() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "option_table.py"),
                           "--check"], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert done.returncode == 0, done.stdout + done.stderr


# -- settings --------------------------------------------------------------------------

@pytest.mark.parametrize("name", entries(celery_compat.SETTINGS, IMPLEMENTED))
def test_an_implemented_setting_is_accepted_and_kept(name: str) -> None:
    app = new_app()
    value = config.DEFAULTS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        app.conf[name] = value
    assert app.conf[name] == value and name in app.conf.changed


@pytest.mark.parametrize("name", entries(celery_compat.SETTINGS, MAPPED))
def test_a_mapped_setting_sets_what_it_maps_to(name: str) -> None:
    app = new_app()
    app.conf[name] = "db+postgresql://u@h/mapped"
    to = celery_compat.SETTINGS[name].to
    assert app.conf[to] == "postgresql://u@h/mapped" and to in app.conf.changed


@pytest.mark.parametrize("name", entries(celery_compat.SETTINGS, IGNORED))
def test_an_ignored_setting_warns_once_with_its_reason(name: str) -> None:
    app = new_app()
    reason = celery_compat.SETTINGS[name].how
    with pytest.warns(UserWarning) as caught:
        app.conf[name] = 1
    assert [str(w.message) for w in caught] == [
        f"pgqueue ignores the Celery setting {name!r}: {reason}"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        app.conf[name] = 2  # once per process
    assert name not in app.conf and not app.conf.changed


@pytest.mark.parametrize("name", entries(celery_compat.SETTINGS, REFUSED))
def test_a_refused_setting_names_the_alternative_in_one_line(name: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        new_app().conf[name] = 1
    message = str(caught.value)
    assert message == (f"setting {name!r} is not supported: "
                       f"{celery_compat.SETTINGS[name].how}")


@pytest.mark.parametrize(("old", "name"), sorted(celery_compat.old_names().items()))
def test_old_names_in_the_registry_are_read_as_their_setting(old: str, name: str) -> None:
    assert config.celery_name(old) == name


@pytest.mark.parametrize(("old", "name"), [
    # Celery's "New lowercase settings" table, by its prefix rules
    ("CELERY_ACCEPT_CONTENT", "accept_content"), ("CELERY_TIMEZONE", "timezone"),
    ("CELERYBEAT_SCHEDULER", "beat_scheduler"), ("BROKER_TRANSPORT_OPTIONS",
                                                 "broker_transport_options"),
    ("CELERY_CACHE_BACKEND_OPTIONS", "cache_backend_options"),
    ("CELERY_REDIS_MAX_CONNECTIONS", "redis_max_connections"),
    ("CELERY_SECURITY_CERT_STORE", "security_cert_store"),
    ("CELERY_TASK_PUBLISH_RETRY_POLICY", "task_publish_retry_policy"),
    ("CELERY_QUEUES", "task_queues"), ("CELERYD_PREFETCH_MULTIPLIER",
                                       "worker_prefetch_multiplier"),
    ("CELERY_WORKER_DIRECT", "worker_direct"), ("CELERYD_STATE_DB", "worker_state_db"),
    ("CELERY_EVENT_QUEUE_TTL", "event_queue_ttl"), ("CELERY_RESULT_PERSISTENT",
                                                    "result_persistent"),
])
def test_celerys_old_names_reach_their_entry(old: str, name: str) -> None:
    assert config.celery_name(old) == name and name in celery_compat.SETTINGS


@pytest.mark.parametrize(("name", "value", "words"), [
    ("accept_content", ["json", "pickle"], "'pickle' is refused"),
    ("result_accept_content", ["yaml"], "'yaml' is refused"),
    ("task_serializer", "pickle", "'pickle' is refused"),
    ("enable_utc", False, "can only be True: pgqueue keeps every time in UTC"),
    ("result_extended", False, "can only be True"),
])
def test_refused_values_of_implemented_settings(name: str, value: Any, words: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        new_app().conf[name] = value
    assert words in str(caught.value) and "\n" not in str(caught.value)


# -- task options ----------------------------------------------------------------------

class Base(Task):
    marker = "base"


# A value for every implemented task option, and the attribute it sets on the task.
TASK_SAMPLES: dict[str, Any] = {
    "queue": "reports", "priority": 7, "max_retries": 2, "default_retry_delay": 5,
    "autoretry_for": (ValueError,), "dont_autoretry_for": (KeyError,),
    "retry_kwargs": {"countdown": 1}, "retry_backoff": 2, "retry_backoff_max": 30,
    "retry_jitter": False, "ignore_result": True, "expires": 60, "time_limit": 9,
    "soft_time_limit": 8, "track_started": True, "lease": 45, "serializer": "json",
}


@pytest.mark.parametrize("name", entries(celery_compat.TASK_OPTIONS, IMPLEMENTED))
def test_an_implemented_task_option_is_kept_on_the_task(name: str) -> None:
    app = new_app()

    def job(*args: Any) -> None:
        return None

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if name == "name":
            assert app.task(name="reg.named")(job).name == "reg.named"
        elif name == "bind":
            bound = app.task(bind=True, name="reg.bound")(lambda self: self.name)
            assert bound.apply().get() == "reg.bound"
        elif name == "base":
            based: Any = app.task(base=Base, name="reg.based")(job)
            assert based.marker == "base"
        else:
            assert name in TASK_SAMPLES, f"give {name!r} a sample in TASK_SAMPLES"
            task = app.task(name=f"reg.{name}", **{name: TASK_SAMPLES[name]})(job)
            assert getattr(task, name) == TASK_SAMPLES[name]


@pytest.mark.parametrize("name", entries(celery_compat.TASK_OPTIONS, IGNORED))
def test_an_ignored_task_option_warns_once_with_its_reason(name: str) -> None:
    app = new_app()
    reason = celery_compat.TASK_OPTIONS[name].how
    with pytest.warns(UserWarning) as caught:
        given: dict[str, Any] = {name: True}
        app.task(name="reg.one", **given)(lambda: None)
    assert [str(w.message) for w in caught] == [
        f"pgqueue ignores the task option {name!r}: {reason}"]


@pytest.mark.parametrize("name", entries(celery_compat.TASK_OPTIONS, REFUSED))
def test_a_refused_task_option_names_the_alternative_in_one_line(name: str) -> None:
    with pytest.raises(TypeError) as caught:
        given: dict[str, Any] = {name: True}
        new_app().task(name="reg.refused", **given)(lambda: None)
    assert str(caught.value).endswith(
        f": option {name!r} is not supported: {celery_compat.TASK_OPTIONS[name].how}")


def test_an_unknown_task_option_is_refused_with_a_suggestion() -> None:
    with pytest.raises(TypeError, match="unknown task option 'retry_backof'; did you mean "
                                        "'retry_backoff'"):
        new_app().task(retry_backof=True)(lambda: None)


# -- effects shown here ----------------------------------------------------------------

def test_task_eager_propagates_raises() -> None:
    app = new_app()

    @app.task(name="reg.broken")
    def broken() -> None:
        raise ValueError("broken")

    assert isinstance(broken.apply().result, ValueError)  # Celery's default: False
    with pytest.raises(ValueError, match="broken"):
        broken.apply(throw=True)
    app.conf.task_eager_propagates = True
    with pytest.raises(ValueError, match="broken"):
        broken.apply()
    app.conf.task_always_eager = True
    with pytest.raises(ValueError, match="broken"):
        broken.delay()
    assert isinstance(broken.apply(throw=False).result, ValueError)
