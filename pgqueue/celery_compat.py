"""Every Celery option and setting, and what pgqueue does with each: the one registry.

Four tables: :data:`SETTINGS` (Celery's settings, new and old names, and pgqueue's own),
:data:`TASK_OPTIONS` (``@app.task(...)`` options and ``Task`` attributes),
:data:`SEND_OPTIONS` (``apply_async``, ``send_task``, ``Signature.set``). Each name has
one :class:`Entry`, whose status is one of:

- ``implemented``: it has its effect; ``how`` says where, ``test`` names a test showing it.
- ``mapped``: read as another pgqueue name (``to``).
- ``ignored``: accepted, and warned about once, because its meaning does not exist here
  (a broker or result backend pgqueue doesn't have); ``how`` says why.
- ``refused``: refused in one line; ``how`` names the alternative.

The code that accepts names reads these tables (``config.py`` for settings,
``task.check_task_options`` and ``client/producer.py`` for options), so a name is accepted
exactly when its entry says so. Changing what pgqueue does with a name is a one-line change
here (``"link": refused(...)`` becomes ``"link": done(..., test=...)``), plus the code that
honours it. ``python scripts/option_table.py`` writes the table in
docs/migrating-from-celery.md; tests/unit/test_option_registry.py walks every entry.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

IMPLEMENTED = "implemented"
MAPPED = "mapped"
IGNORED = "ignored"
REFUSED = "refused"
STATUSES = (IMPLEMENTED, MAPPED, IGNORED, REFUSED)


@dataclass(frozen=True)
class Entry:
    status: str
    #: implemented: where and how; mapped: a note; ignored: why; refused: the alternative.
    how: str
    #: implemented: ``path::test_name`` of a test that shows the effect.
    test: str = ""
    #: mapped: the pgqueue name it is read as.
    to: str = ""
    #: settings: Celery's old uppercase names that its prefix rules do not derive.
    old: tuple[str, ...] = ()
    #: ``pgqueue`` for names Celery doesn't have.
    origin: str = "celery"

    @property
    def accepted(self) -> bool:
        return self.status != REFUSED


def done(how: str, test: str = "", old: tuple[str, ...] = ()) -> Entry:
    return Entry(IMPLEMENTED, how, test=test, old=old)


def ours(how: str, test: str = "") -> Entry:
    """A pgqueue name Celery doesn't have."""
    return Entry(IMPLEMENTED, how, test=test, origin="pgqueue")


def mapped(to: str, how: str = "", old: tuple[str, ...] = ()) -> Entry:
    return Entry(MAPPED, how or f"read as {to}", to=to, old=old)


def ignored(why: str, old: tuple[str, ...] = ()) -> Entry:
    return Entry(IGNORED, why, old=old)


def refused(alternative: str, old: tuple[str, ...] = ()) -> Entry:
    return Entry(REFUSED, alternative, old=old)


_T = "tests/integration"
_ROW = f"{_T}/client/test_option_registry.py::test_a_producer_setting_shapes_the_row"
_WORKER = f"{_T}/client/test_option_registry.py::test_worker_settings_shape_the_worker"
_RATE = "rate limits arrive with flow control (issue 16); limit concurrency with a queue " \
        "and worker -c meanwhile"
_CHORD = "chords are not supported yet; wait for the results in the task that needs them"
_NO_BROKER = "there is no message broker: jobs are rows in PostgreSQL"
_NO_EVENTS = "events are NOTIFYs on <schema>.events, with no queue or exchange to configure"
_OPS = f"{_T}/ops"
_NO_AMQP = "AMQP/RabbitMQ only; queues are names of rows, with no exchanges or bindings"
_NO_CONTROL = "remote control is rows in control_requests, not broker queues"
_JSON = "JSON only: another content type is refused in one line"


def _backend(name: str) -> Entry:
    return ignored(f"configures the {name} result backend; results are rows in PostgreSQL")


def _backend_settings(prefix: str, name: str, keys: str) -> dict[str, Entry]:
    return {f"{prefix}_{key}": _backend(name) for key in keys.split()}


#: Every setting: Celery's (from its configuration reference, 5.x) and pgqueue's own.
SETTINGS: dict[str, Entry] = {
    # -- general, time and date ------------------------------------------------------------
    "accept_content": done(_JSON, "tests/unit/test_option_registry.py::"
                                  "test_refused_values_of_implemented_settings"),
    "result_accept_content": done(_JSON),
    "enable_utc": done("always on: every time is stored in UTC; False is refused (give "
                       "timezone= for naive datetimes and crontabs)"),
    "imports": done("imported when the worker or beat starts",
                    f"{_T}/client/test_celery_config_effects.py::"
                    "test_a_config_module_with_imports_has_the_worker_load_the_tasks"),
    "include": done("imported when the worker or beat starts"),
    "timezone": done("naive datetimes (eta, expires) and crontabs are read in it",
                     f"{_T}/client/test_core_enqueue.py::"
                     "test_naive_eta_is_read_in_the_app_timezone"),
    # -- pgqueue's own ---------------------------------------------------------------------
    "dsn": ours("the PostgreSQL URL of the jobs and results (also broker_url, result_backend)"),
    "schema": ours("the schema of pgqueue's tables"),
    "task_default_max_retries": ours("max_retries of jobs sent by name for a task this "
                                     "process doesn't import", _ROW),
    "task_default_retry_delay": ours(
        "default_retry_delay of tasks that don't set it",
        f"{_T}/client/test_option_registry.py::test_task_default_retry_delay_sets_the_delay"),
    "task_max_args_bytes": ours("largest JSON of one job's arguments, refused when sent"),
    "task_max_args_depth": ours("deepest nesting of an argument, refused when sent"),
    "producer_pool_size": ours("connections of the process's enqueue pool"),
    "result_max_bytes": ours("largest return value a task may store"),
    "priority_aging": ours("seconds of waiting per priority step of a queued job"),
    "worker_lease_seconds": ours("how long a claim lives without a heartbeat", _WORKER),
    "worker_poll_interval": ours("safety-net poll under LISTEN/NOTIFY", _WORKER),
    "worker_shutdown_timeout": ours("how long a warm shutdown waits for running tasks", _WORKER),
    "worker_claim_batch_size": ours("most jobs claimed by one statement", _WORKER),
    "worker_finish_batch_size": ours("most outcomes written by one statement"),
    "leader_ttl_seconds": ours("how long leadership lives without renewal"),
    "maintenance_interval": ours("how often the leader runs the rescuer"),
    "stage_interval": ours("longest wait of the stager for due jobs"),
    "beat_catch_up": ours("whether missed periodic runs fire once on start"),
    # -- beat ------------------------------------------------------------------------------
    "beat_schedule": done("periodic tasks, kept in the schedules table"),
    "beat_max_loop_interval": done("longest sleep of the scheduler"),
    "beat_scheduler": refused("schedules live in the schedules table (pgqueue schedule, "
                              "the Django admin); remove the setting"),
    "beat_schedule_filename": ignored("beat keeps its state in the schedules table, not a "
                                      "file"),
    "beat_sync_every": ignored("each fire is written to the schedules table at once"),
    "beat_cron_starting_deadline": refused("use beat_catch_up=False to skip missed runs"),
    # -- broker ----------------------------------------------------------------------------
    "broker_url": mapped("dsn", "the PostgreSQL URL (sqla+postgresql:// and db+postgresql:// "
                                "read too); other brokers are refused"),
    "broker_read_url": refused("one database serves reads and writes: set broker_url"),
    "broker_write_url": refused("one database serves reads and writes: set broker_url"),
    "broker_transport": ignored(f"{_NO_BROKER}; the URL names PostgreSQL"),
    "broker_transport_options": ignored(f"{_NO_BROKER} (no transport)"),
    "broker_connection_timeout": refused("put connect_timeout in the PostgreSQL URL "
                                         "(?connect_timeout=4)"),
    "broker_connection_retry": ignored("pgqueue always reconnects with capped backoff"),
    "broker_connection_retry_on_startup": ignored("pgqueue always reconnects with capped "
                                                  "backoff"),
    "broker_connection_max_retries": ignored("pgqueue always reconnects with capped backoff"),
    "broker_channel_error_retry": ignored(f"{_NO_BROKER} (no channels)"),
    "broker_failover_strategy": refused("give libpq several hosts in the URL "
                                        "(host=a,b target_session_attrs=read-write)"),
    "broker_heartbeat": ignored("leases replace broker heartbeats (worker_lease_seconds)"),
    "broker_heartbeat_checkrate": ignored("leases replace broker heartbeats "
                                          "(worker_lease_seconds)"),
    "broker_login_method": ignored(_NO_AMQP),
    "broker_native_delayed_delivery_queue_type": ignored(_NO_AMQP),
    "broker_pool_limit": ignored("there is no broker connection pool; the enqueue pool is "
                                 "sized by producer_pool_size"),
    "broker_use_ssl": refused("put sslmode=require (and sslrootcert=...) in the PostgreSQL "
                              "URL"),
    "broker_host": refused("give the whole PostgreSQL URL in broker_url"),
    "broker_port": refused("give the whole PostgreSQL URL in broker_url"),
    "broker_user": refused("give the whole PostgreSQL URL in broker_url"),
    "broker_password": refused("give the whole PostgreSQL URL in broker_url"),
    "broker_vhost": refused("give the whole PostgreSQL URL in broker_url; the schema "
                            "setting separates apps sharing a database"),
    # -- result backends pgqueue doesn't have ----------------------------------------------
    "cache_backend": _backend("cache"),
    "cache_backend_options": _backend("cache"),
    **_backend_settings("cassandra", "Cassandra", "entry_ttl keyspace port read_consistency "
                        "servers bundle_path write_consistency auth_provider auth_kwargs "
                        "options"),
    "cassandra_table": ignored("configures the Cassandra result backend; results are rows in "
                               "PostgreSQL", old=("CASSANDRA_COLUMN_FAMILY",)),
    **_backend_settings("s3", "S3", "access_key_id secret_access_key bucket base_path "
                        "endpoint_url region"),
    **_backend_settings("azureblockblob", "Azure Block Blob", "container_name "
                        "retry_initial_backoff_sec retry_increment_base retry_max_attempts "
                        "base_path connection_timeout read_timeout"),
    **_backend_settings("gcs", "Google Cloud Storage", "bucket project base_path ttl"),
    "couchbase_backend_settings": _backend("Couchbase"),
    "arangodb_backend_settings": _backend("ArangoDB"),
    "mongodb_backend_settings": _backend("MongoDB"),
    **_backend_settings("cosmosdbsql", "CosmosDB", "database_name collection_name "
                        "consistency_level max_retry_attempts max_retry_wait_time"),
    **_backend_settings("redis", "Redis", "backend_use_ssl db host max_connections username "
                        "password port socket_timeout socket_connect_timeout "
                        "retry_on_timeout socket_keepalive backend_health_check_interval"),
    **_backend_settings("elasticsearch", "Elasticsearch", "retry_on_timeout max_retries "
                        "timeout save_meta_as_text"),
    # -- control and events ----------------------------------------------------------------
    "control_queue_ttl": ignored(_NO_CONTROL),
    "control_queue_expires": ignored(_NO_CONTROL),
    "control_exchange": ignored(_NO_CONTROL),
    "event_queue_expires": ignored(_NO_EVENTS),
    "event_queue_ttl": ignored(_NO_EVENTS),
    "event_queue_prefix": ignored(_NO_EVENTS),
    "event_serializer": ignored(_NO_EVENTS),
    "event_exchange": ignored(_NO_EVENTS),
    # -- results ---------------------------------------------------------------------------
    "result_backend": mapped("dsn", "the same PostgreSQL URL as broker_url (db+postgresql:// "
                                    "read too)", old=("CELERY_RESULT_DBURI",)),
    "result_cache_max": ignored("AsyncResult reads the row each time; nothing is cached",
                                old=("CELERY_MAX_CACHED_RESULTS",)),
    "result_compression": ignored("results are stored as jsonb, uncompressed",
                                  old=("CELERY_MESSAGE_COMPRESSION",)),
    "result_exchange": ignored(_NO_AMQP),
    "result_exchange_type": ignored(_NO_AMQP),
    "result_expires": done("a pruner deletes older results",
                           f"{_T}/client/test_core_results.py::"
                           "test_results_expire_after_result_expires",
                           old=("CELERY_TASK_RESULT_EXPIRES",)),
    "result_persistent": ignored("results are rows in PostgreSQL, always persistent"),
    "result_extended": done("always on: name, args, kwargs, worker, retries are columns of "
                            "the result; False is refused"),
    "result_serializer": done(_JSON),
    "result_backend_transport_options": ignored("results are rows in PostgreSQL (no "
                                                "transport)"),
    "result_chord_retry_interval": refused(_CHORD),
    "result_chord_join_timeout": refused(_CHORD),
    "result_backend_max_sleep_between_retries_ms": ignored(
        "a result is written by the worker's finish statement, retried with its "
        "reconnect backoff"),
    "result_backend_max_retries": ignored("a result is written by the worker's finish "
                                          "statement, retried with its reconnect backoff"),
    "result_backend_base_sleep_between_retries_ms": ignored(
        "a result is written by the worker's finish statement, retried with its "
        "reconnect backoff"),
    "result_backend_always_retry": ignored("a result is written by the worker's finish "
                                           "statement, retried with its reconnect backoff"),
    # -- security (message signing) --------------------------------------------------------
    "security_certificate": refused("messages are rows: restrict who may insert them with "
                                    "database roles (docs/security.md)"),
    "security_cert_store": refused("messages are rows: restrict who may insert them with "
                                   "database roles (docs/security.md)"),
    "security_key": refused("messages are rows: restrict who may insert them with database "
                            "roles (docs/security.md)"),
    "security_key_password": refused("messages are rows: restrict who may insert them with "
                                     "database roles (docs/security.md)"),
    "security_digest": refused("messages are rows: restrict who may insert them with "
                               "database roles (docs/security.md)"),
    # -- Celery's database backend ---------------------------------------------------------
    "database_url": mapped("dsn", "the same PostgreSQL URL as broker_url"),
    "database_engine_options": ignored("pgqueue connects with psycopg, not SQLAlchemy",
                                       old=("CELERY_RESULT_ENGINE_OPTIONS",)),
    "database_short_lived_sessions": ignored(
        "pgqueue connects with psycopg, not SQLAlchemy sessions",
        old=("CELERY_RESULT_DB_SHORT_LIVED_SESSIONS",)),
    "database_table_schemas": refused("the tables live in one schema: set schema"),
    "database_table_names": refused("the table names are fixed: set schema to separate apps",
                                    old=("CELERY_RESULT_DB_TABLENAMES",
                                         "CELERY_RESULT_DB_TABLE_NAMES")),
    "database_create_tables_at_setup": refused("tables are created by `pgqueue migrate` "
                                               "(or Django's migrate)"),
    # -- tasks -----------------------------------------------------------------------------
    "task_acks_late": ignored("a job is done when its outcome is written (leases, not acks)"),
    "task_acks_on_failure_or_timeout": ignored("a failed job always ends FAILURE or is "
                                               "retried"),
    "task_always_eager": done("apply_async runs the task in the caller (task.apply)"),
    "task_annotations": done("options carried to tasks by name or '*'",
                             f"{_T}/client/test_celery_config_effects.py::"
                             "test_annotated_time_limit_ends_the_job"),
    "task_compression": ignored("arguments are stored as jsonb, uncompressed"),
    "task_create_missing_queues": ignored("a queue is just a name; any queue works"),
    "task_inherit_parent_priority": refused("give priority= when sending from a task"),
    "task_default_delivery_mode": ignored("every job is a durable row"),
    "task_default_queue": done("the queue of tasks that don't name one",
                               f"{_T}/client/test_celery_config_effects.py::"
                               "test_a_flask_config_with_celerys_old_names_runs_a_task"),
    "task_default_queue_type": ignored(_NO_AMQP),
    "task_default_exchange": ignored(_NO_AMQP),
    "task_default_exchange_type": ignored(_NO_AMQP),
    "task_default_routing_key": ignored("a job goes to its queue (task_default_queue); "
                                        "there are no routing keys to default"),
    "task_default_rate_limit": refused(_RATE),
    "task_default_priority": done("the priority of tasks that don't set one (0..9)", _ROW),
    "task_eager_propagates": done(
        "task.apply() and eager apply_async raise the task's exception",
        "tests/unit/test_option_registry.py::test_task_eager_propagates_raises",
        old=("CELERY_EAGER_PROPAGATES_EXCEPTIONS",)),
    "task_ignore_result": done("no result row for a success",
                               f"{_T}/worker/test_core_worker.py::"
                               "test_ignore_result_leaves_no_result_row"),
    "task_store_eager_result": refused("an eager result is never stored: run a worker, or "
                                       "call task.apply() and keep its result"),
    "task_protocol": ignored("there is no message protocol: a job is a row"),
    "task_publish_retry": ignored("an enqueue is one INSERT, retried once on a dead pooled "
                                  "connection, then raised"),
    "task_publish_retry_policy": ignored("an enqueue is one INSERT, retried once on a dead "
                                         "pooled connection, then raised"),
    "task_queues": refused("queues are names: a worker consumes those given with -Q/--queues"),
    "task_queue_max_priority": ignored("priorities 0..9 work on every queue"),
    "task_queue_ha_policy": ignored(_NO_AMQP, old=("CELERY_QUEUE_HA_POLICY",)),
    "task_reject_on_worker_lost": ignored("lost jobs are always requeued until max_retries"),
    "task_remote_tracebacks": refused("read AsyncResult.traceback for the worker's traceback"),
    "task_routes": done("dicts, patterns, routers; queue=, routing_key= (names the queue), "
                        "priority=", f"{_T}/client/test_core_enqueue.py::"
                                     "test_task_routes_choose_the_queue"),
    "task_send_sent_event": done("producers send task-sent events (docs/operations.md)",
                                 f"{_OPS}/test_events.py::test_task_sent_and_revoked",
                                 old=("CELERY_SEND_TASK_SENT_EVENT",)),
    "task_serializer": done(_JSON),
    "task_soft_time_limit": done("SoftTimeLimitExceeded raised in the task", _ROW,
                                 old=("CELERYD_SOFT_TIME_LIMIT",
                                      "CELERYD_TASK_SOFT_TIME_LIMIT")),
    "task_time_limit": done("the task is stopped and the job fails", _ROW,
                            old=("CELERYD_TIME_LIMIT", "CELERYD_TASK_TIME_LIMIT")),
    "task_store_errors_even_if_ignored": ignored("a failure is always stored, even with "
                                                 "ignore_result"),
    "task_track_started": done("STARTED while running",
                               f"{_T}/worker/test_core_worker.py::"
                               "test_task_track_started_setting"),
    "task_allow_error_cb_on_chord_header": refused(_CHORD),
    # -- workers ---------------------------------------------------------------------------
    "worker_agent": ignored("Celery's monitoring agent bootstep; pgqueue has none (the "
                            "tables are the monitoring)"),
    "worker_autoscaler": refused("pgqueue's autoscaler is built in: pgqueue worker "
                                 "--autoscale=MAX,MIN (docs/operations.md)"),
    "worker_cancel_long_running_tasks_on_connection_loss": ignored("leases decide ownership"),
    "worker_soft_shutdown_timeout": refused("use worker_shutdown_timeout (seconds a warm "
                                            "shutdown waits for running tasks)"),
    "worker_enable_soft_shutdown_on_idle": refused("use worker_shutdown_timeout"),
    "worker_concurrency": done("size of the pool (-c)", _WORKER),
    "worker_consumer": refused("the worker's consumer cannot be replaced; use signals and "
                               "task hooks"),
    "worker_direct": refused("send to a queue only that worker consumes (-Q)"),
    "worker_disable_rate_limits": refused(_RATE, old=("CELERY_DISABLE_RATE_LIMITS",)),
    "worker_deduplicate_successful_tasks": ignored("a finished job leaves the jobs table and "
                                                   "never runs again"),
    "worker_enable_remote_control": refused(
        "control requests need the control role: grant it to no one (docs/security.md)",
        old=("CELERY_ENABLE_REMOTE_CONTROL",)),
    "worker_hijack_root_logger": done(
        "when the app's import configured logging: True keeps pgqueue's handler alone, "
        "False the app's", f"{_T}/cli/test_worker_logging_settings.py::"
        "test_hijack_root_logger_false_keeps_the_apps_handlers"),
    "worker_log_color": refused("configure colours in your own handler (setup_logging "
                                "signal)"),
    "worker_log_format": done("the format of pgqueue worker's and beat's log lines",
                              f"{_T}/cli/test_worker_logging_settings.py::"
                              "test_worker_log_format_formats_the_lines"),
    "worker_lost_wait": ignored("a lost child's job is ended as soon as the loss is seen",
                                old=("CELERYD_WORKER_LOST_WAIT",)),
    "worker_max_memory_per_child": done("with -P processes; refused with the other pools",
                                        _WORKER),
    "worker_max_tasks_per_child": done("with -P processes; refused with the other pools",
                                       _WORKER),
    "worker_pool": done("threads, processes (prefork), asyncio, solo", _WORKER),
    "worker_pool_putlocks": ignored("a worker claims only for its free slots"),
    "worker_pool_restarts": done("allows control pool_restart (-P processes)",
                                 f"{_OPS}/test_control.py::"
                                 "test_pool_restart_replaces_the_children"),
    "worker_proc_alive_timeout": ignored("the processes pool waits for no start-up "
                                         "handshake; a child that dies is replaced"),
    "worker_prefetch_multiplier": ignored("a worker claims exactly as many jobs as it has "
                                          "free slots"),
    "worker_enable_prefetch_count_reduction": ignored("a worker claims exactly as many jobs "
                                                      "as it has free slots"),
    "worker_redirect_stdouts": ignored("stdout is left alone"),
    "worker_redirect_stdouts_level": ignored("stdout is left alone"),
    "worker_send_task_events": done("workers send task events, as with -E "
                                    "(docs/operations.md)",
                                    f"{_OPS}/test_events.py::"
                                    "test_the_setting_turns_task_events_on",
                                    old=("CELERY_SEND_EVENTS", "CELERYD_SEND_EVENTS")),
    "worker_state_db": ignored("revokes are rows in the database, kept across restarts"),
    "worker_task_log_format": refused("pgqueue has no separate task logger: set "
                                      "worker_log_format; outcome lines name the task and "
                                      "its id"),
    "worker_timer": ignored("scheduled jobs are staged by the leader's stager"),
    "worker_timer_precision": ignored("scheduled jobs are staged by the leader's stager "
                                      "(stage_interval)"),
    "worker_detect_quorum_queues": ignored(_NO_AMQP),
}

#: ``@app.task(...)`` options and ``Task`` attributes.
TASK_OPTIONS: dict[str, Entry] = {
    "name": done("the registered name"),
    "bind": done("the task gets self"),
    "base": done("the Task class to subclass"),
    "shared": ignored("app.task registers with its app; shared_task registers with every "
                      "app"),
    "typing": ignored("arguments are checked by the task's own signature when it runs"),
    "queue": done("the default queue of the task"),
    "priority": done("the default priority of the task (0..9, higher first)"),
    "max_retries": done("retries before FAILURE",
                        f"{_T}/worker/test_core_worker.py::"
                        "test_explicit_retry_until_max_retries_then_failure_with_the_last_"
                        "exception"),
    "default_retry_delay": done("seconds before a retry"),
    "autoretry_for": done("exceptions that retry the task",
                          f"{_T}/worker/test_core_worker.py::"
                          "test_autoretry_for_and_dont_autoretry_for"),
    "dont_autoretry_for": done("exceptions that do not"),
    "retry_kwargs": done("options of automatic retries"),
    "retry_backoff": done("exponential backoff of automatic retries",
                          f"{_T}/worker/test_core_worker.py::"
                          "test_autoretry_follows_the_backoff_formula"),
    "retry_backoff_max": done("cap of the backoff"),
    "retry_jitter": done("full jitter of the backoff"),
    "ignore_result": done("no result row for a success"),
    "expires": done("the job is REVOKED if it has not started by then"),
    "time_limit": done("hard time limit"),
    "soft_time_limit": done("SoftTimeLimitExceeded in the task"),
    "track_started": done("STARTED while running",
                          f"{_T}/worker/test_core_worker.py::"
                          "test_track_started_shows_started_while_running"),
    "lease": ours("seconds a claim lasts without a heartbeat"),
    "serializer": done(_JSON),
    "acks_late": ignored("a job is done when its outcome is written (leases, not acks)"),
    "acks_on_failure_or_timeout": ignored("a failed job always ends FAILURE or is retried"),
    "reject_on_worker_lost": ignored("lost jobs are always requeued until max_retries"),
    "store_errors_even_if_ignored": ignored("a failure is always stored, even with "
                                            "ignore_result"),
    "trail": ignored("child tasks are not tracked; parent_id and root_id are columns"),
    "send_events": ignored("events are sent by workers started with -E, for every task"),
    "resultrepr_maxsize": ignored("log lines shorten results to 1024 characters"),
    "rate_limit": refused(_RATE),
    "throws": refused("expected exceptions are not supported yet: catch them in the task "
                      "and return a value saying so"),
    "store_eager_result": refused("an eager result is never stored: run a worker"),
    "backend": refused("results are rows in PostgreSQL: remove backend="),
    "autoregister": refused("every task is registered; name it to send it by name"),
    "lazy": refused("tasks are created when decorated: remove lazy="),
    "filter": refused("wrap the function yourself before decorating it"),
    "Request": refused("the worker's request class cannot be replaced; use hooks and "
                       "signals"),
    "Strategy": refused("the worker's strategy cannot be replaced; use hooks and signals"),
    "pydantic": refused("validate arguments inside the task"),
    "pydantic_strict": refused("validate arguments inside the task"),
    "pydantic_context": refused("validate arguments inside the task"),
    "pydantic_dump_kwargs": refused("validate arguments inside the task"),
}

#: ``apply_async``, ``send_task`` and ``Signature.set`` options.
SEND_OPTIONS: dict[str, Entry] = {
    "countdown": done("run no earlier than now plus countdown",
                      f"{_T}/worker/test_core_worker.py::"
                      "test_countdown_and_eta_start_no_earlier_and_within_a_second"),
    "eta": done("run no earlier than then (naive: in timezone)"),
    "expires": done("REVOKED if not started by then",
                    f"{_T}/client/test_core_enqueue.py::"
                    "test_apply_async_eta_and_expires_datetime"),
    "priority": done("0..9, higher first"),
    "queue": done("the queue"),
    "routing_key": done("names the queue when queue= is not given",
                        f"{_T}/client/test_headers_shadow_routing.py::"
                        "test_routing_key_names_the_queue_unless_queue_is_given"),
    "task_id": done("the job's id",
                    f"{_T}/client/test_core_enqueue.py::"
                    "test_duplicate_task_id_of_a_live_job_is_a_clear_error"),
    "ignore_result": done("no result row for a success"),
    "time_limit": done("hard time limit of this job"),
    "soft_time_limit": done("soft time limit of this job"),
    "max_retries": done("retries of this job"),
    "track_started": done("STARTED while running"),
    "serializer": done(_JSON),
    "headers": done("stored in the headers column; self.request.headers",
                    f"{_T}/client/test_headers_shadow_routing.py::"
                    "test_headers_reach_the_task_sql_and_the_result"),
    "shadow": done("the name in log lines, kept in the result's headers",
                   f"{_T}/client/test_headers_shadow_routing.py::"
                   "test_shadow_names_the_task_in_log_lines"),
    "parent_id": done("the parent_id column"),
    "root_id": done("the root_id column"),
    "group_id": done("the group_id column"),
    "retry_policy": done("given to before_task_publish receivers; the INSERT itself is "
                         "retried once on a dead pooled connection"),
    "retry": ignored("an enqueue is one INSERT, retried once on a dead pooled connection, "
                     "then raised"),
    "connection": ours("enqueue inside that transaction (psycopg, SQLAlchemy, Django)"),
    "unique_key": ours("at most one live job per key"),
    "on_duplicate": ours("'return' the live job's result or 'raise' DuplicateJob"),
    "lease": ours("seconds a claim lasts without a heartbeat"),
    "exchange": refused("pgqueue has no exchanges; name the queue with queue= (or "
                        "routing_key=)"),
    "link": refused("callbacks are not supported yet; call the next task from inside the "
                    "task"),
    "link_error": refused("error callbacks are not supported yet; handle the error in the "
                          "task's on_failure hook"),
    "chain": refused("chains are not supported yet; call the next task from inside the task"),
    "chord": refused(_CHORD),
    "group_index": refused("groups are not supported yet; pass group_id= to tie jobs "
                           "together"),
    "add_to_parent": refused("task trees are not tracked yet; pass parent_id= and root_id="),
    "compression": refused("arguments are stored as jsonb, uncompressed: remove compression="),
    "producer": refused("there is no producer: pass connection= to enqueue in a transaction"),
    "publisher": refused("there is no producer: pass connection= to enqueue in a transaction"),
    "router": refused("routes come from the task_routes setting: put the router there"),
    "route_name": refused("routes come from the task_routes setting: pass queue= instead"),
    "result_cls": refused("send_task returns pgqueue's AsyncResult: wrap it if you need "
                          "another class"),
    "reply_to": refused("results are rows, read with AsyncResult: remove reply_to="),
    "retries": refused("a new job starts at attempt 1; use max_retries="),
    "delivery_mode": refused("every job is a durable row: remove delivery_mode="),
    "mandatory": refused(f"{_NO_AMQP}: remove mandatory="),
    "immediate": refused(f"{_NO_AMQP}: remove immediate="),
    "declare": refused("queues are names and nothing is declared: remove declare="),
    "expiration": refused("use expires="),
    "content_type": refused("arguments are always JSON (jsonb): remove content_type="),
    "content_encoding": refused("arguments are always JSON (jsonb): remove "
                                "content_encoding="),
    "timeout": refused("an enqueue is one INSERT; set statement_timeout on the connection"),
    "confirm_timeout": refused("an enqueue is one INSERT, committed or raised"),
    "stamped_headers": refused("stamping is not supported; use headers="),
}


def names(table: Mapping[str, Entry], *statuses: str) -> frozenset[str]:
    """The names of ``table`` whose status is one of ``statuses`` (all when none given)."""
    return frozenset(k for k, e in table.items() if not statuses or e.status in statuses)


def accepted(table: Mapping[str, Entry]) -> frozenset[str]:
    return frozenset(k for k, e in table.items() if e.accepted)


def reasons(table: Mapping[str, Entry], status: str) -> dict[str, str]:
    """``name -> how`` for the entries of one status (the refusal's alternative, the
    reason a name is ignored)."""
    return {k: e.how for k, e in table.items() if e.status == status}


def old_names() -> dict[str, str]:
    """Celery's old uppercase setting names that its prefix rules do not derive."""
    return {old: name for name, e in SETTINGS.items() for old in e.old}


_warned: set[tuple[str, str]] = set()


def warn_ignored(kind: str, given: Mapping[str, object], table: Mapping[str, Entry]) -> None:
    """Warn once per process for each ignored name in ``given``, with the reason."""
    for name in given:
        entry = table.get(name)
        if entry is not None and entry.status == IGNORED and (kind, name) not in _warned:
            _warned.add((kind, name))
            warnings.warn(f"pgqueue ignores the {kind} {name!r}: {entry.how}", stacklevel=4)
