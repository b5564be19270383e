"""Configuration as Celery takes it: a Flask app's config, old uppercase names, config
modules with imports, task_annotations, and Celery's spellings of a Postgres URL."""

from __future__ import annotations

import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import flask
import pytest

from pgqueue import App, ConfigurationError, Task

PG_URL = "postgresql://u:secret@db.example:5432/app"


@pytest.fixture(autouse=True)
def no_env_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PGQUEUE_DSN", "DATABASE_URL", "PGQUEUE_SCHEMA"):
        monkeypatch.delenv(name, raising=False)


def new_app(**settings: Any) -> App:
    return App("proj", dsn=PG_URL, set_as_current=False, **settings)


# -- Flask's config and the old uppercase names ---------------------------------------------

def test_a_flask_config_updates_conf_and_its_own_keys_stay_readable() -> None:
    web = flask.Flask("web")
    web.config.update(SECRET_KEY="s3", SQLALCHEMY_DATABASE_URI="sqlite://", TESTING=True,
                      CELERY_BROKER_URL="sqla+postgresql://u:p@db/flask",
                      CELERY_RESULT_BACKEND="db+postgresql://u:p@db/flask",
                      CELERY_TASK_TRACK_STARTED=True)
    app = App("proj", set_as_current=False)
    app.conf.update(web.config)
    assert app.dsn == "postgresql://u:p@db/flask"
    assert app.conf.task_track_started is True
    assert app.conf.DEBUG is False and app.conf["SECRET_KEY"] == "s3"
    assert app.conf.SQLALCHEMY_DATABASE_URI == "sqlite://"
    assert app.conf.TESTING is True
    assert "SESSION_COOKIE_NAME" in app.conf  # every Flask key kept, as Celery keeps it
    assert "debug" not in app.conf  # and none became a setting


@pytest.mark.parametrize(("old", "new", "value"), [
    # rows of Celery's "New lowercase settings" table that name a pgqueue setting
    ("CELERY_ACCEPT_CONTENT", "accept_content", ["json"]),
    ("CELERY_ENABLE_UTC", "enable_utc", True),
    ("CELERY_TIMEZONE", "timezone", "Europe/Paris"),
    ("CELERY_IMPORTS", "imports", ("proj.tasks",)),
    ("CELERY_INCLUDE", "include", ["proj.more"]),
    ("CELERYBEAT_MAX_LOOP_INTERVAL", "beat_max_loop_interval", 2.0),
    ("CELERYBEAT_SCHEDULE", "beat_schedule", {}),
    ("CELERY_RESULT_EXPIRES", "result_expires", 60),
    ("CELERY_RESULT_SERIALIZER", "result_serializer", "json"),
    ("CELERY_TASK_ALWAYS_EAGER", "task_always_eager", True),
    ("CELERY_ALWAYS_EAGER", "task_always_eager", True),
    ("CELERY_DEFAULT_QUEUE", "task_default_queue", "work"),
    ("CELERY_EAGER_PROPAGATES", "task_eager_propagates", False),
    ("CELERY_IGNORE_RESULT", "task_ignore_result", True),
    ("CELERY_ROUTES", "task_routes", {"proj.*": {"queue": "q"}}),
    ("CELERY_TASK_SERIALIZER", "task_serializer", "json"),
    ("CELERY_TASK_TRACK_STARTED", "task_track_started", True),
    ("CELERY_TRACK_STARTED", "task_track_started", True),
    ("CELERYD_SOFT_TIME_LIMIT", "task_soft_time_limit", 5),
    ("CELERYD_TASK_SOFT_TIME_LIMIT", "task_soft_time_limit", 5),
    ("CELERYD_TIME_LIMIT", "task_time_limit", 9),
    ("CELERYD_TASK_TIME_LIMIT", "task_time_limit", 9),
    ("CELERYD_CONCURRENCY", "worker_concurrency", 3),
    ("CELERYD_HIJACK_ROOT_LOGGER", "worker_hijack_root_logger", False),
    ("CELERY_WORKER_LOG_FORMAT", "worker_log_format", "%(message)s"),
    ("CELERYD_MAX_TASKS_PER_CHILD", "worker_max_tasks_per_child", 10),
    ("CELERYD_POOL", "worker_pool", "processes"),
])
def test_old_uppercase_names_map_to_settings(old: str, new: str, value: Any) -> None:
    app = new_app()
    app.conf.update({old: value})
    assert app.conf[new] == value
    assert app.conf[old] == value  # readable under the old name too, as in Celery
    assert new in app.conf.changed


@pytest.mark.parametrize("old", ["BROKER_URL", "CELERY_RESULT_BACKEND", "CELERY_RESULT_DBURI",
                                 "CELERY_BROKER_URL"])
def test_old_url_names_set_the_database(old: str) -> None:
    app = App("proj", set_as_current=False)
    app.conf.update({old: "db+postgresql+psycopg2://u@h/old"})
    assert app.dsn == "postgresql://u@h/old"


def test_old_names_of_ignored_settings_warn_like_the_new_ones() -> None:
    with pytest.warns(UserWarning, match="task_acks_on_failure_or_timeout"):
        new_app().conf.update(CELERY_ACKS_ON_FAILURE_OR_TIMEOUT=True)


@pytest.mark.parametrize(("key", "message"), [
    ("CELERY_TASK_TRACK_STARTD", "did you mean 'task_track_started'"),
    ("CELERYD_CONCURENCY", "did you mean 'worker_concurrency'"),
    ("CELERY_CACHE_BACKEN", "unknown setting 'CELERY_CACHE_BACKEN' (read as 'cache_backen')"),
    ("BROKER_USE_SSL", "setting 'BROKER_USE_SSL' is not supported: put sslmode=require"),
    ("CELERY_DEFAULT_RATE_LIMIT", "must be a rate above 0"),  # 0: Celery's "no limit"
])
def test_celery_names_pgqueue_cannot_honour_are_refused(key: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        new_app().conf.update({key: 0 if key.endswith("RATE_LIMIT") else 1})


@pytest.mark.parametrize(("typo", "meant"), [
    ("task_acks_lat", "task_acks_late"), ("task_track_startd", "task_track_started"),
    ("worker_prefetch_multiplyer", "worker_prefetch_multiplier"),
    ("broker_connection_retry_on_start", "broker_connection_retry_on_startup"),
])
def test_a_lowercase_near_miss_suggests_the_nearest_name_only(typo: str, meant: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        new_app().conf.update({typo: True})
    assert str(error.value) == f"unknown setting {typo!r}; did you mean {meant!r}?"


@pytest.mark.parametrize("far", ["my_own_value", "frobnicate_everything", "debug"])
def test_a_lowercase_name_far_from_any_setting_is_refused_without_a_guess(far: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        new_app().conf.update({far: 1})
    assert str(error.value) == f"unknown setting {far!r}"


@pytest.mark.parametrize("key", [1, None, ("a",)])
def test_a_setting_name_that_is_not_a_string_is_one_clear_error(key: Any) -> None:
    with pytest.raises(ConfigurationError, match="setting names are strings"):
        new_app().conf.update({key: 1})


def test_namespace_celery_reads_a_flask_config() -> None:
    web = flask.Flask("web")
    web.config.update(CELERY_BROKER_URL=PG_URL, CELERY_TASK_DEFAULT_QUEUE="web",
                      CELERY_TASK_ANNOTATIONS={"*": {"max_retries": 7}})
    app = App("proj", set_as_current=False)
    app.config_from_object(web.config, namespace="CELERY")
    assert app.dsn == PG_URL
    assert app.conf.task_default_queue == "web"
    assert "SECRET_KEY" not in app.conf  # outside the namespace: not read at all


# -- config modules ---------------------------------------------------------------------

CELERYCONFIG = '''
import os
from datetime import timedelta
from os import environ
from pathlib import Path as _Path
from pgqueue import crontab
from pgqueue.schedules import crontab as cron_alias

BASE = _Path(__file__).parent
ONE_HOUR = 3600

def route_task(name, args, kwargs, options, task=None, **kw):
    return {"queue": "routed"}

class Helper:
    pass

broker_url = os.environ.get("NO_SUCH_VARIABLE_HOPEFULLY", "sqla+postgresql://u@h/cfg")
result_expires = timedelta(hours=2)
task_routes = (route_task,)
timezone = "Europe/Berlin"
task_annotations = {"*": {"max_retries": 9}}
beat_schedule = {
    "nightly": {"task": "proj.tasks.cleanup", "schedule": crontab(hour=3, minute=0)},
    "often": {"task": "proj.tasks.ping", "schedule": timedelta(seconds=30)},
}
'''


def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str) -> str:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


def test_a_celeryconfig_module_with_imports_loads(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    module = write_module(tmp_path, monkeypatch, "celeryconfig_imports", CELERYCONFIG)
    app = App("proj", set_as_current=False)
    app.config_from_object(module)
    assert app.dsn == "postgresql://u@h/cfg"
    assert app.conf.seconds("result_expires") == 7200
    assert app.conf.timezone == "Europe/Berlin"
    assert app.conf.task_routes[0].__name__ == "route_task"  # a function named like a setting
    assert set(app.conf.beat_schedule) == {"nightly", "often"}
    assert app.conf.ONE_HOUR == 3600  # an uppercase constant: kept, like Celery
    assert app.conf.task_annotations == {"*": {"max_retries": 9}}
    for skipped in ("os", "timedelta", "environ", "crontab", "cron_alias", "route_task",
                    "Helper", "_Path"):
        assert skipped not in app.conf


def test_a_config_module_with_a_typo_still_gets_the_suggestion(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = write_module(tmp_path, monkeypatch, "celeryconfig_typo",
                          "from datetime import timedelta\nresult_expire = timedelta(1)\n")
    with pytest.raises(ConfigurationError, match="did you mean 'result_expires'"):
        App("proj", set_as_current=False).config_from_object(module)


def test_config_from_object_by_dotted_path_to_a_class_skips_properties_and_methods() -> None:
    app = App("proj", set_as_current=False)
    app.config_from_object(f"{__name__}:LazySettingsLike")
    assert app.conf.task_default_queue == "from_class"
    assert app.conf.worker_concurrency == 2


class LazySettingsLike:
    """Like Django's LazySettings: properties and methods that are not settings."""

    task_default_queue = "from_class"
    CELERYD_CONCURRENCY = 2

    @property
    def configured(self) -> bool:
        return True

    def is_overridden(self, name: str) -> bool:
        return False


def test_an_instance_with_properties_loads_too() -> None:
    app = App("proj", set_as_current=False)
    app.config_from_object(LazySettingsLike())
    assert app.conf.task_default_queue == "from_class"


@pytest.mark.parametrize("value", [5, [1], "", [""]])
def test_imports_setting_refuses_what_is_not_module_names(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="'imports' must list module names"):
        new_app().conf.imports = value


# -- URLs -------------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "sqla+postgresql://u:secret@db.example:5432/app",
    "db+postgresql://u:secret@db.example:5432/app",
    "db+postgresql+psycopg2://u:secret@db.example:5432/app",
    "postgresql+psycopg://u:secret@db.example:5432/app",
    "postgresql+psycopg2://u:secret@db.example:5432/app",
    "SQLA+PostgreSQL://u:secret@db.example:5432/app",
])
def test_celery_and_sqlalchemy_spellings_of_a_postgres_url(url: str) -> None:
    for app in (App("proj", broker=url, set_as_current=False),
                App("proj", backend=url, set_as_current=False),
                App("proj", set_as_current=False, broker_url=url),
                App("proj", set_as_current=False, result_backend=url)):
        assert app.dsn == PG_URL


def test_postgres_scheme_is_kept_as_written() -> None:
    assert new_app(broker_url="postgres://u@h/db").dsn == "postgres://u@h/db"


@pytest.mark.parametrize("url", [
    "redis://:secret@localhost:6379/0", "amqp://guest:secret@localhost//",
    "db+sqlite:///results.db", "sqla+mysql://u:secret@h/db", "db+mysql+pymysql://u:secret@h/db",
    "postgresql+psycopg2+extra://u:secret@h/db", "rpc://", "+://u:secret@h",
])
def test_other_urls_are_refused_in_one_line_without_the_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        App("proj", set_as_current=False, result_backend=url)
    message = str(error.value)
    assert "\n" not in message and "secret" not in message
    assert "not supported" in message and "postgresql://user:password@host" in message


# -- task_annotations -------------------------------------------------------------------

def tasks_of(app: App) -> tuple[Task, Task]:
    @app.task(name="proj.add", max_retries=2)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="proj.mul")
    def mul(x: int, y: int) -> int:
        return x * y

    return add, mul


def test_annotations_by_name_and_star_apply_before_and_after_definition() -> None:
    before = new_app(task_annotations={"proj.add": {"time_limit": 3}})
    add, mul = tasks_of(before)
    assert (add.time_limit, mul.time_limit) == (3, None)
    after = new_app()
    add, mul = tasks_of(after)
    after.conf.task_annotations = {"*": {"soft_time_limit": 4, "default_retry_delay": 1}}
    assert (add.soft_time_limit, mul.soft_time_limit) == (4, 4)
    assert add.default_retry_delay == 1


def test_annotations_carry_retry_options() -> None:
    app = new_app()
    add, _ = tasks_of(app)
    app.conf.task_annotations = {"proj.add": {
        "autoretry_for": [KeyError, ValueError], "retry_backoff": 2, "retry_backoff_max": 10,
        "retry_jitter": False, "max_retries": 5, "retry_kwargs": {"countdown": 0}}}
    assert add.autoretry_for == (KeyError, ValueError)  # a tuple, as isinstance needs
    assert (add.retry_backoff, add.retry_backoff_max, add.retry_jitter) == (2, 10, False)
    assert add.max_retries == 5


def test_celerys_order_first_naming_annotation_then_first_star() -> None:
    class OnlyAdd:
        def annotate(self, task: Task) -> dict[str, Any] | None:
            return {"time_limit": 1, "priority": 1} if task.name == "proj.add" else None

    app = new_app()
    add, mul = tasks_of(app)
    app.conf.task_annotations = [
        {"proj.mul": {"time_limit": 2}}, OnlyAdd(), {"proj.add": {"time_limit": 99}},
        {"*": {"priority": 5}}, {"*": {"priority": 7}}]
    assert (add.time_limit, add.priority) == (1, 5)  # OnlyAdd first; '*' applied after it
    assert (mul.time_limit, mul.priority) == (2, 5)


def test_a_callable_and_a_dotted_path_are_annotations_too() -> None:
    app = new_app()
    add, mul = tasks_of(app)
    app.conf.task_annotations = (
        lambda task: {"lease": 60} if task.name.endswith("mul") else None)
    assert (add.lease, mul.lease) == (None, 60)
    app.conf.task_annotations = f"{__name__}:DottedAnnotation"
    assert (add.lease, mul.lease) == (None, None) and add.expires == 30


class DottedAnnotation:
    def annotate(self, task: Task) -> dict[str, Any] | None:
        return {"expires": 30} if task.name == "proj.add" else None


def test_changing_annotations_undoes_the_earlier_ones() -> None:
    app = new_app()
    add, _ = tasks_of(app)
    app.conf.task_annotations = {"proj.add": {"max_retries": 9, "queue": "annotated"}}
    assert (add.max_retries, add.queue) == (9, "annotated")
    app.conf.task_annotations = None
    assert (add.max_retries, add.queue) == (2, None)  # back to the decorator's values


def test_acks_late_is_accepted_with_the_warning_of_the_setting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pgqueue.config._warned", set())
    app = new_app()
    add, _ = tasks_of(app)
    with pytest.warns(UserWarning, match="pgqueue ignores the Celery setting 'task_acks_late'"):
        app.conf.task_annotations = {"*": {"acks_late": False}}


@pytest.mark.parametrize(("annotation", "message"), [
    ({"*": {"rate_limit": "10/d"}}, r"rate_limit must be a rate above 0 like '10/s'"),
    ({"proj.add": {"rate_limit": "0/m"}}, "rate_limit must be a rate above 0"),
    ({"*": {"max_retry": 1}}, "did you mean 'max_retries'"),
    ({"*": {"name": "other"}}, "'name' is fixed when the task is defined"),
    ({"*": {"bind": True}}, "'bind' is fixed when the task is defined"),
    ({"*": {"on_failure": print}}, "changes a method"),
    ({"*": {"@on_failure": print}}, "changes a method"),
    ({"*": {"serializer": "pickle"}}, "serializer: 'pickle' is refused"),
    ({"*": {"priority": 42}}, "priority must be an integer from 0 to 9"),
    ({"*": {"autoretry_for": ["ValueError"]}}, "autoretry_for must be exception classes"),
    ({"*": {1: 2}}, "option names are strings"),
    ({"*": "time_limit=3"}, "expected a dict of task options"),
    (42, "is not a dict keyed by task name"),
    ([{"*": {}}, None], "is not a dict keyed by task name"),
])
def test_annotations_pgqueue_cannot_honour_are_refused_when_set(annotation: Any,
                                                                message: str) -> None:
    app = new_app()
    tasks_of(app)
    with pytest.raises(ConfigurationError, match=message):
        app.conf.task_annotations = annotation
    assert app.conf.task_annotations is None


def test_a_failing_callable_annotation_leaves_every_task_as_it_was() -> None:
    app = new_app(task_annotations={"*": {"time_limit": 8}})
    add, mul = tasks_of(app)

    def bad_for_mul(task: Task) -> dict[str, Any]:
        return {"time_limit": 1} if task.name == "proj.add" else {"rate_limit": "fast"}

    with pytest.raises(ConfigurationError,
                       match="task_annotations for proj.mul: rate_limit must be a rate"):
        app.conf.task_annotations = bad_for_mul
    assert (add.time_limit, mul.time_limit) == (8, 8)
    assert app.conf.task_annotations == {"*": {"time_limit": 8}}


def test_an_annotation_refused_at_registration_names_the_task() -> None:
    app = new_app(task_annotations=lambda task: {"queue": 3})
    with pytest.raises(ConfigurationError, match="task_annotations for proj.add: queue"):
        tasks_of(app)


def test_no_warning_for_a_flask_config_without_celery_keys() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new_app().conf.update(flask.Flask("quiet").config)
