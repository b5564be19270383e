"""Configuration: Celery's names, clear errors for unknown settings and foreign brokers."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest

from pgqueue import App, ConfigurationError
from pgqueue.config import Settings, resolve_dsn, validate_dsn

PG_URL = "postgresql://u:p@db.example:5432/app"


@pytest.fixture(autouse=True)
def no_env_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PGQUEUE_DSN", "DATABASE_URL", "PGQUEUE_SCHEMA"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("url", ["redis://localhost:6379/0", "amqp://guest@localhost//",
                                 "sqs://", "rediss://cache:6380"])
def test_foreign_broker_url_is_refused_with_an_explanation(url: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        App("proj", broker=url, set_as_current=False)
    message = str(error.value)
    assert "not supported" in message
    assert "PostgreSQL" in message
    assert "postgresql://" in message  # shows what to write instead


def test_foreign_backend_url_is_refused_too() -> None:
    with pytest.raises(ConfigurationError, match="PostgreSQL"):
        App("proj", dsn=PG_URL, backend="redis://localhost", set_as_current=False)


def test_broker_and_backend_accept_postgres_urls() -> None:
    assert App("proj", broker=PG_URL, set_as_current=False).dsn == PG_URL
    assert App("proj", backend=PG_URL, set_as_current=False).dsn == PG_URL
    sqlalchemy_style = "postgresql+psycopg://u:p@db.example:5432/app"
    assert App("proj", broker=sqlalchemy_style, set_as_current=False).dsn == PG_URL


def test_not_a_connection_string_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="not a PostgreSQL connection string"):
        validate_dsn("localhost")
    assert validate_dsn("host=localhost dbname=app") == "host=localhost dbname=app"


def test_unknown_setting_in_conf_update_suggests_the_nearest() -> None:
    app = App("proj", dsn=PG_URL, set_as_current=False)
    with pytest.raises(ConfigurationError) as error:
        app.conf.update(task_track_startd=True)
    assert "unknown setting 'task_track_startd'" in str(error.value)
    assert "did you mean 'task_track_started'" in str(error.value)


def test_unknown_setting_by_attribute_suggests_the_nearest() -> None:
    app = App("proj", dsn=PG_URL, set_as_current=False)
    with pytest.raises(ConfigurationError, match="did you mean 'result_expires'"):
        app.conf.result_expire = 10


def test_unknown_keyword_to_app_is_reported() -> None:
    with pytest.raises(ConfigurationError, match="did you mean 'task_default_queue'"):
        App("proj", dsn=PG_URL, task_default_queu="x", set_as_current=False)


def test_celery_setting_names_are_read() -> None:
    app = App("proj", dsn=PG_URL, set_as_current=False)
    app.conf.update(task_serializer="json", result_expires=60, timezone="Europe/Paris",
                    task_track_started=True, task_time_limit=30,
                    task_routes={"proj.*": {"queue": "q"}})
    assert app.conf.result_expires == 60
    assert app.conf.seconds("result_expires") == 60.0
    assert app.conf.timezone == "Europe/Paris"
    assert app.conf.task_track_started is True
    assert app.conf.task_time_limit == 30
    assert app.conf["TASK_ROUTES"] == {"proj.*": {"queue": "q"}}


def test_result_expires_defaults_to_one_day() -> None:
    assert Settings().seconds("result_expires") == timedelta(days=1).total_seconds()


def test_ignored_celery_setting_warns_once_and_is_accepted() -> None:
    app = App("proj", dsn=PG_URL, set_as_current=False)
    with pytest.warns(UserWarning, match="worker_prefetch_multiplier"):
        app.conf.update(worker_prefetch_multiplier=4)


def test_config_from_object_with_namespace() -> None:
    settings = SimpleNamespace(
        CELERY_BROKER_URL=PG_URL,
        CELERY_TASK_TRACK_STARTED=True,
        CELERY_RESULT_EXPIRES=120,
        DEBUG=True,  # a Django setting outside the namespace: not ours
        SECRET_KEY="x",
    )
    app = App("proj", set_as_current=False)
    app.config_from_object(settings, namespace="CELERY")
    assert app.dsn == PG_URL
    assert app.conf.task_track_started is True
    assert app.conf.result_expires == 120


def test_config_from_object_namespace_reports_unknown_names() -> None:
    app = App("proj", set_as_current=False)
    with pytest.raises(ConfigurationError, match="did you mean 'task_default_queue'"):
        app.config_from_object({"CELERY_TASK_DEFAULT_QUEU": "x"}, namespace="CELERY")


def test_config_from_object_reads_lowercase_names_of_a_module_like_object() -> None:
    config = SimpleNamespace(broker_url=PG_URL, task_default_queue="work", SOME_CONSTANT=1)
    app = App("proj", set_as_current=False)
    app.config_from_object(config)
    assert app.dsn == PG_URL
    assert app.conf.task_default_queue == "work"


def test_config_from_object_dotted_path() -> None:
    app = App("proj", set_as_current=False)
    app.config_from_object("tests.unit.test_config:CONFIG_FOR_DOTTED_PATH")
    assert app.conf.task_default_priority == 5


CONFIG_FOR_DOTTED_PATH = {"task_default_priority": 5}


def test_dsn_comes_from_pgqueue_dsn_then_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    other = "postgresql://other@elsewhere/db2"
    monkeypatch.setenv("DATABASE_URL", other)
    assert App("proj", set_as_current=False).dsn == other
    monkeypatch.setenv("PGQUEUE_DSN", PG_URL)
    assert App("proj", set_as_current=False).dsn == PG_URL  # PGQUEUE_DSN wins
    explicit = "postgresql://me@here/db3"
    assert App("proj", dsn=explicit, set_as_current=False).dsn == explicit  # code wins


def test_no_dsn_anywhere_says_how_to_give_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pgqueue.db.embedded.available", lambda: False)  # else it starts one
    with pytest.raises(ConfigurationError) as error:
        resolve_dsn(None)
    assert "PGQUEUE_DSN" in str(error.value) and "DATABASE_URL" in str(error.value)


def test_bad_dsn_in_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "redis://localhost")
    with pytest.raises(ConfigurationError, match="^DATABASE_URL: redis:// URLs"):
        App("proj", set_as_current=False).dsn  # noqa: B018


def test_schema_from_code_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert App("proj", dsn=PG_URL, set_as_current=False).schema == "pgqueue"
    monkeypatch.setenv("PGQUEUE_SCHEMA", "from_env")
    assert App("proj", dsn=PG_URL, set_as_current=False).schema == "from_env"
    assert App("proj", dsn=PG_URL, schema="mine", set_as_current=False).schema == "mine"
