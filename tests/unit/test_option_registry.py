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
          "send option": celery_compat.SEND_OPTIONS, "worker flag": celery_compat.WORKER_FLAGS,
          "beat flag": celery_compat.BEAT_FLAGS}


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
def test_each_implemented_entry_names_the_test_showing_its_effect(kind: str) -> None:
    missing = sorted(name for name, entry in TABLES[kind].items()
                     if entry.status in (IMPLEMENTED, MAPPED) and not entry.test
                     and not (kind == "setting" and entry.status == MAPPED))
    assert not missing, (
        f"{kind}s {missing} in pgqueue/celery_compat.py name no test: give each "
        "test='tests/<path>.py::test_name' of a test showing its effect")


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
    assert [str(w.message) for w in caught if issubclass(w.category, UserWarning)] == [
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


# Celery's "New lowercase settings" tables (4.x and 5.x): each old name -> its setting.
CELERY_OLD_NAMES_TABLE = """
CELERY_ACCEPT_CONTENT accept_content  CELERY_ENABLE_UTC enable_utc  CELERY_IMPORTS imports
CELERY_INCLUDE include  CELERY_TIMEZONE timezone
CELERYBEAT_MAX_LOOP_INTERVAL beat_max_loop_interval  CELERYBEAT_SCHEDULE beat_schedule
CELERYBEAT_SCHEDULER beat_scheduler  CELERYBEAT_SCHEDULE_FILENAME beat_schedule_filename
CELERYBEAT_SYNC_EVERY beat_sync_every  BROKER_URL broker_url  BROKER_TRANSPORT broker_transport
BROKER_TRANSPORT_OPTIONS broker_transport_options
BROKER_CONNECTION_TIMEOUT broker_connection_timeout
BROKER_CONNECTION_RETRY broker_connection_retry
BROKER_CONNECTION_MAX_RETRIES broker_connection_max_retries
BROKER_FAILOVER_STRATEGY broker_failover_strategy  BROKER_HEARTBEAT broker_heartbeat
BROKER_LOGIN_METHOD broker_login_method
BROKER_NATIVE_DELAYED_DELIVERY_QUEUE_TYPE broker_native_delayed_delivery_queue_type
BROKER_POOL_LIMIT broker_pool_limit  BROKER_USE_SSL broker_use_ssl
CELERY_CACHE_BACKEND cache_backend  CELERY_CACHE_BACKEND_OPTIONS cache_backend_options
CASSANDRA_COLUMN_FAMILY cassandra_table  CASSANDRA_ENTRY_TTL cassandra_entry_ttl
CASSANDRA_KEYSPACE cassandra_keyspace  CASSANDRA_PORT cassandra_port
CASSANDRA_READ_CONSISTENCY cassandra_read_consistency  CASSANDRA_SERVERS cassandra_servers
CASSANDRA_WRITE_CONSISTENCY cassandra_write_consistency  CASSANDRA_OPTIONS cassandra_options
S3_ACCESS_KEY_ID s3_access_key_id  S3_SECRET_ACCESS_KEY s3_secret_access_key
S3_BUCKET s3_bucket  S3_BASE_PATH s3_base_path  S3_ENDPOINT_URL s3_endpoint_url
S3_REGION s3_region  CELERY_COUCHBASE_BACKEND_SETTINGS couchbase_backend_settings
CELERY_ARANGODB_BACKEND_SETTINGS arangodb_backend_settings
CELERY_MONGODB_BACKEND_SETTINGS mongodb_backend_settings
CELERY_EVENT_QUEUE_EXPIRES event_queue_expires  CELERY_EVENT_QUEUE_TTL event_queue_ttl
CELERY_EVENT_QUEUE_PREFIX event_queue_prefix  CELERY_EVENT_SERIALIZER event_serializer
CELERY_REDIS_DB redis_db  CELERY_REDIS_HOST redis_host
CELERY_REDIS_MAX_CONNECTIONS redis_max_connections  CELERY_REDIS_USERNAME redis_username
CELERY_REDIS_PASSWORD redis_password  CELERY_REDIS_PORT redis_port
CELERY_REDIS_BACKEND_USE_SSL redis_backend_use_ssl  CELERY_RESULT_BACKEND result_backend
CELERY_MAX_CACHED_RESULTS result_cache_max  CELERY_MESSAGE_COMPRESSION result_compression
CELERY_RESULT_EXCHANGE result_exchange  CELERY_RESULT_EXCHANGE_TYPE result_exchange_type
CELERY_RESULT_EXPIRES result_expires  CELERY_TASK_RESULT_EXPIRES result_expires
CELERY_RESULT_PERSISTENT result_persistent  CELERY_RESULT_SERIALIZER result_serializer
CELERY_RESULT_DBURI result_backend  CELERY_RESULT_ENGINE_OPTIONS database_engine_options
CELERY_RESULT_DB_SHORT_LIVED_SESSIONS database_short_lived_sessions
CELERY_RESULT_DB_TABLE_NAMES database_table_names
CELERY_SECURITY_CERTIFICATE security_certificate
CELERY_SECURITY_CERT_STORE security_cert_store  CELERY_SECURITY_KEY security_key
CELERY_SECURITY_KEY_PASSWORD security_key_password  CELERY_ACKS_LATE task_acks_late
CELERY_ACKS_ON_FAILURE_OR_TIMEOUT task_acks_on_failure_or_timeout
CELERY_TASK_ALWAYS_EAGER task_always_eager  CELERY_ANNOTATIONS task_annotations
CELERY_TASK_ANNOTATIONS task_annotations  CELERY_COMPRESSION task_compression
CELERY_TASK_COMPRESSION task_compression
CELERY_CREATE_MISSING_QUEUES task_create_missing_queues
CELERY_TASK_CREATE_MISSING_QUEUES task_create_missing_queues
CELERY_DEFAULT_DELIVERY_MODE task_default_delivery_mode
CELERY_DEFAULT_EXCHANGE task_default_exchange
CELERY_DEFAULT_EXCHANGE_TYPE task_default_exchange_type
CELERY_DEFAULT_QUEUE task_default_queue  CELERY_TASK_DEFAULT_QUEUE task_default_queue
CELERY_DEFAULT_QUEUE_TYPE task_default_queue_type
CELERY_DEFAULT_RATE_LIMIT task_default_rate_limit
CELERY_DEFAULT_ROUTING_KEY task_default_routing_key
CELERY_EAGER_PROPAGATES task_eager_propagates
CELERY_TASK_EAGER_PROPAGATES task_eager_propagates
CELERY_EAGER_PROPAGATES_EXCEPTIONS task_eager_propagates
CELERY_IGNORE_RESULT task_ignore_result  CELERY_PUBLISH_RETRY task_publish_retry
CELERY_PUBLISH_RETRY_POLICY task_publish_retry_policy  CELERY_QUEUES task_queues
CELERY_ROUTES task_routes  CELERY_SEND_SENT_EVENT task_send_sent_event
CELERY_TASK_SEND_SENT_EVENT task_send_sent_event
CELERY_SEND_TASK_SENT_EVENT task_send_sent_event  CELERY_TASK_SERIALIZER task_serializer
CELERYD_SOFT_TIME_LIMIT task_soft_time_limit
CELERYD_TASK_SOFT_TIME_LIMIT task_soft_time_limit
CELERY_TASK_TRACK_STARTED task_track_started  CELERY_TRACK_STARTED task_track_started
CELERY_TASK_REJECT_ON_WORKER_LOST task_reject_on_worker_lost
CELERYD_TIME_LIMIT task_time_limit  CELERYD_TASK_TIME_LIMIT task_time_limit
CELERY_ALLOW_ERROR_CB_ON_CHORD_HEADER task_allow_error_cb_on_chord_header
CELERYD_AGENT worker_agent  CELERYD_AUTOSCALER worker_autoscaler
CELERYD_CONCURRENCY worker_concurrency  CELERYD_CONSUMER worker_consumer
CELERY_WORKER_DIRECT worker_direct  CELERY_DISABLE_RATE_LIMITS worker_disable_rate_limits
CELERY_ENABLE_REMOTE_CONTROL worker_enable_remote_control
CELERYD_HIJACK_ROOT_LOGGER worker_hijack_root_logger  CELERYD_LOG_COLOR worker_log_color
CELERY_WORKER_LOG_FORMAT worker_log_format  CELERYD_LOG_FORMAT worker_log_format
CELERYD_WORKER_LOST_WAIT worker_lost_wait
CELERYD_MAX_TASKS_PER_CHILD worker_max_tasks_per_child  CELERYD_POOL worker_pool
CELERYD_POOL_PUTLOCKS worker_pool_putlocks  CELERYD_POOL_RESTARTS worker_pool_restarts
CELERYD_PREFETCH_MULTIPLIER worker_prefetch_multiplier
CELERYD_ENABLE_PREFETCH_COUNT_REDUCTION worker_enable_prefetch_count_reduction
CELERYD_REDIRECT_STDOUTS worker_redirect_stdouts
CELERYD_REDIRECT_STDOUTS_LEVEL worker_redirect_stdouts_level
CELERY_SEND_EVENTS worker_send_task_events  CELERYD_SEND_EVENTS worker_send_task_events
CELERYD_STATE_DB worker_state_db  CELERY_WORKER_TASK_LOG_FORMAT worker_task_log_format
CELERYD_TASK_LOG_FORMAT worker_task_log_format  CELERYD_TIMER worker_timer
CELERYD_TIMER_PRECISION worker_timer_precision
CELERYD_DETECT_QUORUM_QUEUES worker_detect_quorum_queues
CELERY_QUEUE_HA_POLICY task_queue_ha_policy
"""
CELERY_OLD_NAMES = CELERY_OLD_NAMES_TABLE.split()


@pytest.mark.parametrize(("old", "name"), list(zip(CELERY_OLD_NAMES[::2],
                                                    CELERY_OLD_NAMES[1::2], strict=True)))
def test_celerys_old_names_reach_their_entry(old: str, name: str) -> None:
    assert config.celery_name(old) == name and name in celery_compat.SETTINGS


@pytest.mark.parametrize(("name", "value", "words"), [
    ("accept_content", ["json", "pickle"], "'pickle' is refused"),
    ("result_accept_content", ["yaml"], "'yaml' is refused"),
    ("task_serializer", "pickle", "'pickle' is refused"),
    ("enable_utc", False, "can only be True: pgqueue keeps every time in UTC"),
    ("result_extended", False, "can only be True"),
    ("result_serializer", "pickle", "'pickle' is refused"),
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
    "rate_limit": "10/m", "concurrency_limit": 2,
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
    assert [str(w.message) for w in caught if issubclass(w.category, UserWarning)] == [
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


def test_retry_backoff_max_caps_the_backoff() -> None:
    app = new_app()

    @app.task(name="reg.capped", retry_backoff=100, retry_backoff_max=5, retry_jitter=False)
    def capped() -> None:
        return None

    assert capped.autoretry_countdown() == 5  # 100 * 2**0, capped


@pytest.mark.parametrize("option", ["acks_late", "reject_on_worker_lost"])
def test_an_annotation_carrying_an_ignored_option_warns_once(option: str) -> None:
    app = new_app()
    app.task(name="reg.annotated")(lambda: None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        app.conf.task_annotations = {"*": {option: False}}
        app.conf.task_annotations = {"reg.annotated": {option: True}}
    assert [str(w.message) for w in caught if issubclass(w.category, UserWarning)] == [
        f"pgqueue ignores the Celery setting 'task_{option}': "
        f"{celery_compat.SETTINGS[f'task_{option}'].how}"]
