"""Every Celery option and setting, and what pgqueue does with each: the one registry.

Five tables: :data:`SETTINGS` (Celery's settings, new and old names, and pgqueue's own),
:data:`TASK_OPTIONS` (``@app.task(...)`` options and ``Task`` attributes),
:data:`SEND_OPTIONS` (``apply_async``, ``send_task``, ``Signature.set``),
:data:`WORKER_FLAGS` and :data:`BEAT_FLAGS` (``celery worker``/``celery beat`` flags and
pgqueue's own). Each name has one :class:`Entry`, whose status is one of:

- ``implemented``: it has its effect; ``how`` says where, ``test`` names a test showing it.
- ``mapped``: read as another pgqueue name (``to``).
- ``ignored``: accepted, and warned about once, because its meaning does not exist here
  (a broker or result backend pgqueue doesn't have); ``how`` says why.
- ``refused``: refused in one line; ``how`` names the alternative.

The code that accepts names reads these tables (``config.py`` for settings,
``task.check_task_options`` and ``client/producer.py`` for options, ``cli/flags.py`` for
the flags of ``pgqueue worker`` and ``pgqueue beat``), so a name is accepted
exactly when its entry says so. Changing what pgqueue does with a name is a one-line change
here (``"link": refused(...)`` becomes ``"link": done(..., test=...)``), plus the code that
honours it. ``python scripts/option_table.py`` writes the table in
docs/migrating-from-celery.md; tests/unit/test_option_registry.py walks every entry.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace

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
    #: flags: the other spellings of the flag (``-c`` of ``--concurrency``).
    aliases: tuple[str, ...] = ()
    #: flags: whether the flag takes a value (``--uid 1000``) rather than standing alone.
    takes_value: bool = False

    @property
    def accepted(self) -> bool:
        return self.status != REFUSED


def done(how: str, test: str = "", old: tuple[str, ...] = ()) -> Entry:
    return Entry(IMPLEMENTED, how, test=test, old=old)


def ours(how: str, test: str = "") -> Entry:
    """A pgqueue name Celery doesn't have."""
    return Entry(IMPLEMENTED, how, test=test, origin="pgqueue")


def mapped(to: str, how: str = "", old: tuple[str, ...] = (), test: str = "") -> Entry:
    return Entry(MAPPED, how or f"read as {to}", to=to, old=old, test=test)


def ignored(why: str, old: tuple[str, ...] = ()) -> Entry:
    return Entry(IGNORED, why, old=old)


def refused(alternative: str, old: tuple[str, ...] = ()) -> Entry:
    return Entry(REFUSED, alternative, old=old)


def flag(entry: Entry, *aliases: str, value: bool = False) -> Entry:
    """``entry`` as a command-line flag, also spelt ``aliases``; ``value``: it takes one."""
    return replace(entry, aliases=aliases, takes_value=value)


_T = "tests/integration"
_ROW = f"{_T}/client/test_option_registry.py::test_a_producer_setting_shapes_the_row"
_WORKER = f"{_T}/client/test_option_registry.py::test_worker_settings_shape_the_worker"
_FLOW = "tests/integration/flow"
_RATE_TEST = f"{_FLOW}/test_fleet.py::test_a_rate_limit_holds_across_three_workers"
_CODE_LIMITS = f"{_FLOW}/test_limits.py::test_code_limits_are_written_and_run_time_ones_win"
_REFUSED_VALUES = "tests/unit/test_option_registry.py::test_refused_values_of_implemented_settings"
_PROCESS = f"{_T}/client/test_option_registry.py::" \
           "test_process_settings_shape_pools_and_leader_services"
_ARG_LIMITS = f"{_T}/client/test_option_registry.py::test_argument_limits_refuse_what_is_over_them"
_TASK_ROW = f"{_T}/client/test_option_registry.py::test_a_task_option_shapes_the_rows_of_its_jobs"
_TASK_KEPT = "tests/unit/test_option_registry.py::" \
             "test_an_implemented_task_option_is_kept_on_the_task"
_SEND_ROW = f"{_T}/client/test_option_registry.py::test_an_implemented_send_option_marks_the_row"
_RUNS = f"{_T}/cli/test_worker_flags.py::test_worker_flags_shape_the_running_worker"
_CHORD = ("chords are decided in the database when their last member is recorded "
          "(docs/canvas.md): there is nothing to poll or tune")
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
    "result_accept_content": done(_JSON, test=_REFUSED_VALUES),
    "enable_utc": done("always on: every time is stored in UTC; False is refused (give "
                       "timezone= for naive datetimes and crontabs)", test=_REFUSED_VALUES),
    "imports": done("imported when the worker or beat starts",
                    f"{_T}/client/test_celery_config_effects.py::"
                    "test_a_config_module_with_imports_has_the_worker_load_the_tasks"),
    "include": done("imported when the worker or beat starts", test=_RUNS),
    "timezone": done("naive datetimes (eta, expires) and crontabs are read in it",
                     f"{_T}/client/test_core_enqueue.py::"
                     "test_naive_eta_is_read_in_the_app_timezone"),
    # -- pgqueue's own ---------------------------------------------------------------------
    "dsn": ours("the PostgreSQL URL of the jobs and results (also broker_url, result_backend)",
                test=f"{_T}/client/test_celery_config_effects.py::"
                     "test_a_flask_config_with_celerys_old_names_runs_a_task"),
    "schema": ours("the schema of pgqueue's tables",
                   test=f"{_T}/client/test_core_schema_name.py::"
                        "test_two_schemas_in_one_database_do_not_share_jobs"),
    "task_default_max_retries": ours("max_retries of jobs sent by name for a task this "
                                     "process doesn't import", _ROW),
    "task_default_retry_delay": ours(
        "default_retry_delay of tasks that don't set it",
        f"{_T}/client/test_option_registry.py::test_task_default_retry_delay_sets_the_delay"),
    "task_max_args_bytes": ours("largest JSON of one job's arguments, refused when sent",
                                test=_ARG_LIMITS),
    "task_max_args_depth": ours("deepest nesting of an argument, refused when sent",
                                test=_ARG_LIMITS),
    "producer_pool_size": ours("connections of the process's enqueue pool", test=_PROCESS),
    "result_max_bytes": ours("largest return value a task may store",
                             test=f"{_T}/worker/test_poison_outcomes.py::"
                                  "test_an_oversized_result_is_not_stored_and_names_size_and_limit"),
    "priority_aging": ours("seconds of waiting per priority step of a queued job",
                           test=f"{_T}/services/test_priority_aging.py::"
                                "test_with_aging_a_low_priority_job_runs_under_a_stream_of_higher_ones"),
    "result_expires_failed": ours(
        "how long FAILURE/REVOKED results stay (None: as result_expires)",
        test="tests/integration/history/test_partitions.py::"
             "test_a_days_successes_are_dropped_while_its_failures_stay"),
    "result_archive_schema": ours(
        "schema that expired result partitions move into instead of being dropped "
        "(partitioned results only)",
        test="tests/integration/history/test_partitions.py::"
             "test_archive_keeps_expired_partitions_as_plain_tables"),
    "queue_concurrency": ours("{queue: jobs running at once}, fleet-wide", _CODE_LIMITS),
    "transaction_pooling": ours(
        "a transaction pooler (PgBouncer) in front: no prepares, no session SET; auto-detected",
        "tests/integration/db/test_pgbouncer.py::test_the_setting_overrides_detection"),
    "listen_dsn": ours(
        "direct connection for LISTEN when the DSN is a pooler (else the listener polls)",
        "tests/integration/db/test_pgbouncer.py::test_the_core_path_works_through_pgbouncer"),
    "result_read_dsn": ours(
        "a hot standby for AsyncResult's reads (may lag; get() re-reads on the primary)",
        "tests/replica/test_result_reads.py::test_results_are_read_from_the_standby"),
    "producer_durable": ours(
        "False: sends commit without waiting for the WAL flush (a crash may lose ~0.6 s)",
        "tests/integration/db/test_pgbouncer.py::"
        "test_a_non_durable_producer_turns_synchronous_commit_off"),
    "worker_lease_seconds": ours("how long a claim lives without a heartbeat", _WORKER),
    "worker_poll_interval": ours("safety-net poll under LISTEN/NOTIFY", _WORKER),
    "worker_shutdown_timeout": ours("how long a warm shutdown waits for running tasks", _WORKER),
    "worker_claim_batch_size": ours("most jobs claimed by one statement", _WORKER),
    "worker_finish_batch_size": ours("most outcomes written by one statement", test=_PROCESS),
    "leader_ttl_seconds": ours("how long leadership lives without renewal", test=_PROCESS),
    "maintenance_interval": ours("how often the leader runs the rescuer", test=_PROCESS),
    "stage_interval": ours("longest wait of the stager for due jobs", test=_PROCESS),
    "beat_catch_up": ours("whether missed periodic runs fire once on start",
                          test=f"{_T}/services/test_beat_scheduler.py::"
                               "test_catch_up_off_skips_missed_fires_but_not_a_late_one"),
    # -- beat ------------------------------------------------------------------------------
    "beat_schedule": done("periodic tasks, kept in the schedules table",
                          test=f"{_T}/services/test_beat_scheduler.py::"
                               "test_code_schedules_are_written_when_the_scheduler_starts"),
    "beat_max_loop_interval": done("longest sleep of the scheduler", test=_PROCESS),
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
                            "the result; False is refused", test=_REFUSED_VALUES),
    "result_serializer": done(_JSON, test=_REFUSED_VALUES),
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
    "task_always_eager": done("apply_async runs the task in the caller (task.apply)",
                              test="tests/unit/test_task_definition.py::"
                                   "test_task_always_eager_runs_delay_in_process"),
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
    "task_default_rate_limit": done("a fleet-wide rate for every task without its own",
                                    _CODE_LIMITS),
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
    "task_serializer": done(_JSON, test=_REFUSED_VALUES),
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
    "worker_disable_rate_limits": refused(
        "rate limits hold for the whole fleet, not per worker: remove one with "
        "`pgqueue control rate_limit TASK none`", old=("CELERY_DISABLE_RATE_LIMITS",)),
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
    "name": done("the registered name", test=_TASK_KEPT),
    "bind": done("the task gets self", test=_TASK_KEPT),
    "base": done("the Task class to subclass", test=_TASK_KEPT),
    "shared": ignored("app.task registers with its app; shared_task registers with every "
                      "app"),
    "typing": ignored("arguments are checked by the task's own signature when it runs"),
    "queue": done("the default queue of the task", test=_TASK_ROW),
    "priority": done("the default priority of the task (0..9, higher first)", test=_TASK_ROW),
    "max_retries": done("retries before FAILURE",
                        f"{_T}/worker/test_core_worker.py::"
                        "test_explicit_retry_until_max_retries_then_failure_with_the_last_"
                        "exception"),
    "default_retry_delay": done("seconds before a retry",
                                test=f"{_T}/client/test_option_registry.py::"
                                     "test_task_default_retry_delay_sets_the_delay"),
    "autoretry_for": done("exceptions that retry the task",
                          f"{_T}/worker/test_core_worker.py::"
                          "test_autoretry_for_and_dont_autoretry_for"),
    "dont_autoretry_for": done("exceptions that do not",
                               test=f"{_T}/worker/test_core_worker.py::"
                                    "test_autoretry_for_and_dont_autoretry_for"),
    "retry_kwargs": done("options of automatic retries",
                         test="tests/unit/test_task_definition.py::"
                              "test_autoretry_countdown_follows_retry_options"),
    "retry_backoff": done("exponential backoff of automatic retries",
                          f"{_T}/worker/test_core_worker.py::"
                          "test_autoretry_follows_the_backoff_formula"),
    "retry_backoff_max": done("cap of the backoff",
                              test="tests/unit/test_option_registry.py::"
                                   "test_retry_backoff_max_caps_the_backoff"),
    "retry_jitter": done("full jitter of the backoff",
                         test=f"{_T}/worker/test_core_worker.py::"
                              "test_autoretry_follows_the_backoff_formula"),
    "ignore_result": done("no result row for a success", test=_TASK_ROW),
    "expires": done("the job is REVOKED if it has not started by then", test=_TASK_ROW),
    "time_limit": done("hard time limit", test=_TASK_ROW),
    "soft_time_limit": done("SoftTimeLimitExceeded in the task", test=_TASK_ROW),
    "track_started": done("STARTED while running",
                          f"{_T}/worker/test_core_worker.py::"
                          "test_track_started_shows_started_while_running"),
    "lease": ours("seconds a claim lasts without a heartbeat", test=_TASK_ROW),
    "serializer": done(_JSON, test=_TASK_ROW),
    "acks_late": ignored("a job is done when its outcome is written (leases, not acks)"),
    "acks_on_failure_or_timeout": ignored("a failed job always ends FAILURE or is retried"),
    "reject_on_worker_lost": ignored("lost jobs are always requeued until max_retries"),
    "store_errors_even_if_ignored": ignored("a failure is always stored, even with "
                                            "ignore_result"),
    "trail": ignored("child tasks are not tracked; parent_id and root_id are columns"),
    "send_events": ignored("events are sent by workers started with -E, for every task"),
    "resultrepr_maxsize": ignored("log lines shorten results to 1024 characters"),
    "rate_limit": done("N/s|m|h starts of this task across every worker (docs/flow-control.md)",
                       _RATE_TEST),
    "concurrency_limit": ours("jobs of one concurrency_key running at once, fleet-wide",
                              f"{_FLOW}/test_fleet.py::"
                              "test_queue_and_key_concurrency_hold_across_three_workers"),
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
    "eta": done("run no earlier than then (naive: in timezone)", test=_SEND_ROW),
    "expires": done("REVOKED if not started by then",
                    f"{_T}/client/test_core_enqueue.py::"
                    "test_apply_async_eta_and_expires_datetime"),
    "priority": done("0..9, higher first", test=_SEND_ROW),
    "queue": done("the queue", test=_SEND_ROW),
    "routing_key": done("names the queue when queue= is not given",
                        f"{_T}/client/test_headers_shadow_routing.py::"
                        "test_routing_key_names_the_queue_unless_queue_is_given"),
    "task_id": done("the job's id",
                    f"{_T}/client/test_core_enqueue.py::"
                    "test_duplicate_task_id_of_a_live_job_is_a_clear_error"),
    "ignore_result": done("no result row for a success", test=_SEND_ROW),
    "time_limit": done("hard time limit of this job", test=_SEND_ROW),
    "soft_time_limit": done("soft time limit of this job", test=_SEND_ROW),
    "max_retries": done("retries of this job", test=_SEND_ROW),
    "track_started": done("STARTED while running", test=_SEND_ROW),
    "serializer": done(_JSON, test=_SEND_ROW),
    "headers": done("stored in the headers column; self.request.headers",
                    f"{_T}/client/test_headers_shadow_routing.py::"
                    "test_headers_reach_the_task_sql_and_the_result"),
    "shadow": done("the name in log lines, kept in the result's headers",
                   f"{_T}/client/test_headers_shadow_routing.py::"
                   "test_shadow_names_the_task_in_log_lines"),
    "parent_id": done("the parent_id column", test=_SEND_ROW),
    "root_id": done("the root_id column", test=_SEND_ROW),
    "group_id": done("the group_id column", test=_SEND_ROW),
    "retry_policy": done("given to before_task_publish receivers; the INSERT itself is "
                         "retried once on a dead pooled connection", test=_SEND_ROW),
    "retry": ignored("an enqueue is one INSERT, retried once on a dead pooled connection, "
                     "then raised"),
    "connection": ours("enqueue inside that transaction (psycopg, SQLAlchemy, Django)",
                       test=_SEND_ROW),
    "unique_key": ours("at most one live job per key", test=_SEND_ROW),
    "on_duplicate": ours("'return' the live job's result or 'raise' DuplicateJob", test=_SEND_ROW),
    "concurrency_key": ours("jobs sharing the key run at most concurrency_limit at once",
                            f"{_FLOW}/test_limits.py::"
                            "test_keyed_jobs_wait_in_order_and_slots_come_back"),
    "unique_for": ours(
        "no second job with the unique_key within this many seconds, whatever the state",
        "tests/integration/flow2/test_unique_periods.py::"
        "test_unique_for_holds_the_key_whatever_the_state_until_the_period_ends"),
    "unique_states": ours(
        "which states of the holder keep the unique_key taken (live, waiting, all, ...)",
        "tests/integration/flow2/test_unique_periods.py::"
        "test_a_schedule_with_unique_states_skips_fires_while_its_job_waits"),
    "lease": ours("seconds a claim lasts without a heartbeat", test=_SEND_ROW),
    "exchange": refused("pgqueue has no exchanges; name the queue with queue= (or "
                        "routing_key=)"),
    "link": done("callbacks sent in the transaction that records the outcome (canvas)",
                 f"{_T}/canvas/test_chain_link.py::test_link_and_link_error_on_apply_async"),
    "link_error": done("error callbacks, run as jobs with (request, exc, traceback) "
                       "(canvas)",
                       f"{_T}/canvas/test_chain_link.py::"
                       "test_link_and_link_error_on_apply_async"),
    "chain": refused("Celery's internal message field; send a chain(...) signature "
                     "with its apply_async"),
    "chord": refused("Celery's internal message field; send a chord(header, body) "
                     "signature"),
    "group_index": refused("Celery's internal message field; send a group(...) signature, "
                           "whose GroupResult lists the results in order"),
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

_FLAGS = f"{_T}/cli/test_worker_flags.py"
_SHAPES = f"{_T}/cli/test_celery_cli_shapes.py::" \
          "test_celerys_worker_line_runs_with_pidfile_and_logfile"
_LIMITS = f"{_FLAGS}::test_time_limit_flags_end_the_jobs"
_BEAT = f"{_FLAGS}::test_beat_flags_shape_the_running_beat"
_FOREGROUND = "pgqueue runs in the foreground: let systemd, supervisor or your container " \
              "runtime keep it running"
_USER = "start pgqueue as that user and group (systemd User=/Group=, the container's USER)"
_UMASK = "set the umask where pgqueue is started (systemd UMask=, the shell's umask)"
_EXECUTABLE = "only meant for --detach, which is refused: " + _FOREGROUND
_STATE_FILE = "beat keeps its state in the schedules table, not a file"
_SCHEDULER = "schedules live in the schedules table (pgqueue schedule, the Django admin); " \
             "remove the flag"


def _common(process: str) -> dict[str, Entry]:
    """The flags ``pgqueue worker`` and ``pgqueue beat`` share."""
    test = _RUNS if process == "worker" else _BEAT
    return {
        "--app": flag(done("the module of your App, before or after the command", test), "-A",
                      value=True),
        "--dsn": flag(ours("the PostgreSQL URL (also -b/--broker before the command)", test),
                      value=True),
        "--schema": flag(ours("the schema of pgqueue's tables", test), value=True),
        "--loglevel": flag(done("DEBUG..FATAL in any case; DEBUG adds tracebacks",
                                f"{_T}/cli/test_core_cli.py::"
                                "test_debug_level_shows_the_traceback" if process == "worker"
                                else test), "-l", value=True),
        "--logfile": flag(done("append the log to a file (%n, %h, %p, %i, %I expand)",
                               _SHAPES if process == "worker" else test), "-f", value=True),
        "--pidfile": flag(done("the pid in a file, removed on exit; refuses to start while "
                               "that pid runs", _SHAPES if process == "worker" else test),
                          value=True),
        "--detach": flag(refused(_FOREGROUND), "-D"),
        "--uid": flag(refused(_USER), value=True),
        "--gid": flag(refused(_USER), value=True),
        "--umask": flag(refused(_UMASK), value=True),
        "--executable": flag(refused(_EXECUTABLE), value=True),
    }


#: ``celery worker`` flags (Celery 5.6) and ``pgqueue worker``'s own.
WORKER_FLAGS: dict[str, Entry] = {
    **_common("worker"),
    "--hostname": flag(done("the node name in logs and the workers table (%h, %n, %d "
                            "expand)", _SHAPES), "-n", value=True),
    "--concurrency": flag(done("size of the pool", _RUNS), "-c", value=True),
    "--pool": flag(done("threads, processes (prefork), solo, asyncio; gevent and eventlet "
                        "refused naming asyncio", _SHAPES), "-P", value=True),
    "--queues": flag(done("the queues consumed", _RUNS), "-Q", value=True),
    "--include": flag(mapped("include", "modules imported at start, added to the include "
                                        "setting", test=_RUNS), "-I", value=True),
    "--optimization": flag(done("default and fair both claim only for free slots (Celery's "
                                "fair)", f"{_T}/worker/test_core_worker.py::"
                                         "test_a_worker_claims_no_more_than_its_free_slots"),
                           "-O", value=True),
    "--beat": flag(done("also run the scheduler", "tests/acceptance/services/"
                        "test_beat_processes.py::"
                        "test_leader_sigkilled_and_restarted_every_fire_runs_exactly_once"),
                   "-B"),
    "--time-limit": flag(done("hard limit of tasks without their own", _LIMITS), value=True),
    "--soft-time-limit": flag(done("soft limit of tasks without their own", _LIMITS),
                              value=True),
    "--max-tasks-per-child": flag(done("with -P processes; refused with the other pools",
                                       f"{_T}/worker/test_reliability.py::"
                                       "test_process_pool_recycles_children"), value=True),
    "--max-memory-per-child": flag(done("with -P processes; refused with the other pools",
                                        f"{_FLAGS}::test_max_memory_per_child_replaces_the_"
                                        "child"), value=True),
    "--lease": flag(ours("seconds a claim lasts without a heartbeat", _RUNS), value=True),
    "--poll-interval": flag(ours("safety-net poll under LISTEN/NOTIFY", _RUNS), value=True),
    "--shutdown-timeout": flag(ours("how long a warm shutdown waits for running tasks",
                                    "tests/acceptance/worker/test_faults.py::"
                                    "test_shutdown_timeout_hands_running_jobs_back_at_once"),
                               value=True),
    "--task-events": flag(done("task and worker events over NOTIFY (pgqueue events)",
                               "tests/integration/ops/test_events.py::"
                               "test_events_command_with_a_worker_process"), "-E", "--events"),
    "--statedb": flag(ignored("revokes are rows in the database, kept across restarts"),
                      "-S", value=True),
    "--schedule-filename": flag(ignored(_STATE_FILE), "-s", "--schedule", value=True),
    "--without-gossip": flag(ignored("workers do not talk to each other: the tables are "
                                     "shared")),
    "--without-mingle": flag(ignored("workers do not talk to each other: the tables are "
                                     "shared")),
    "--without-heartbeat": flag(ignored(f"{_NO_EVENTS}; leases are renewed regardless")),
    "--prefetch-multiplier": flag(ignored("a worker claims exactly as many jobs as it has "
                                          "free slots"), value=True),
    "--disable-prefetch": flag(ignored("a worker claims exactly as many jobs as it has free "
                                       "slots")),
    "--heartbeat-interval": flag(refused("a worker renews its leases every third of "
                                         "--lease: set --lease"), value=True),
    "--autoscale": flag(done("grows the pool up to MAX while jobs wait, back to MIN",
                             "tests/integration/ops/test_control.py::"
                             "test_autoscale_grows_with_the_backlog_and_shrinks_after_it"),
                        value=True),
    "--exclude-queues": flag(refused("name the queues to consume with -Q"), "-X",
                             value=True),
    "--purge": flag(refused("run `pgqueue purge` before starting the worker"), "--discard"),
    "--scheduler": flag(refused(_SCHEDULER), value=True),
    "--metrics-port": flag(ours(
        "serve this worker's Prometheus metrics (docs/metrics.md)",
        "tests/integration/metrics/test_worker_metrics.py::"
        "test_the_worker_counts_each_outcome_once_per_task_and_queue"), value=True),
    "--metrics-host": flag(ours(
        "the address --metrics-port listens on",
        "tests/integration/metrics/test_worker_metrics.py::"
        "test_a_host_that_cannot_be_bound_is_one_error_line"), value=True),
}

#: ``celery beat`` flags (Celery 5.6) and ``pgqueue beat``'s own.
BEAT_FLAGS: dict[str, Entry] = {
    **_common("beat"),
    "--hostname": flag(ours("the name of this scheduler in logs and the leader table",
                            _BEAT), "-n", value=True),
    "--max-interval": flag(mapped("beat_max_loop_interval", "longest sleep of the "
                                  "scheduler (beat_max_loop_interval)", test=_BEAT),
                           value=True),
    "--schedule": flag(ignored(_STATE_FILE), "-s", value=True),
    "--scheduler": flag(refused(_SCHEDULER), "-S", value=True),
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
