"""The registry's send options against a real database: each implemented one is accepted
and leaves its mark on the row, each ignored one is accepted with its reason, each refused
one inserts nothing and names the alternative. Also the effects of settings the registry
points here: task_default_retry_delay, and task_routes' routing_key, exchange and shadow
as the results row keeps it."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from pgqueue import App, celery_compat, signature
from pgqueue.celery_compat import IGNORED, IMPLEMENTED, REFUSED
from pgqueue.utils import uuid
from tests.conftest import running_worker, wait_until

ID = "0190f5c2-52a1-7d6e-8b1f-3c2d4e5f6a7b"
Row = dict[str, Any]

# A value for every implemented send option, and what the row shows of it.
SEND_SAMPLES: dict[str, tuple[Any, Callable[[Row], bool]]] = {
    "countdown": (600, lambda r: r["state"] == "scheduled"),
    "eta": (datetime(2100, 1, 1, tzinfo=timezone.utc),
            lambda r: r["run_at"] == datetime(2100, 1, 1, tzinfo=timezone.utc)),
    "expires": (600, lambda r: r["expires_at"] is not None),
    "priority": (7, lambda r: r["priority"] == 7),
    "queue": ("reports", lambda r: r["queue"] == "reports"),
    "routing_key": ("keyed", lambda r: r["queue"] == "keyed"),
    "task_id": (ID, lambda r: str(r["id"]) == ID),
    "ignore_result": (True, lambda r: r["ignore_result"] is True),
    "time_limit": (9, lambda r: r["options"]["time_limit"] == 9),
    "soft_time_limit": (8, lambda r: r["options"]["soft_time_limit"] == 8),
    "max_retries": (1, lambda r: r["max_retries"] == 1),
    "track_started": (True, lambda r: r["options"]["track_started"] is True),
    "serializer": ("json", lambda r: r["args"] == [1]),
    "headers": ({"tenant": "acme"}, lambda r: r["headers"] == {"tenant": "acme"}),
    "shadow": ("nightly", lambda r: r["options"]["shadow"] == "nightly"
               and r["headers"] == {"shadow": "nightly"}),
    "parent_id": (ID, lambda r: str(r["parent_id"]) == ID),
    "root_id": (ID, lambda r: str(r["root_id"]) == ID),
    "group_id": (ID, lambda r: str(r["group_id"]) == ID),
    "retry_policy": ({"max_retries": 1}, lambda r: r["args"] == [1]),
    "unique_key": ("only-one", lambda r: r["unique_key"] == "only-one"),
    "on_duplicate": ("raise", lambda r: r["args"] == [1]),
    # with unique_for/unique_states the key is a claim (unique_claims), not the column
    "concurrency_key": ("user:42", lambda r: r["options"].get("concurrency_key") == "user:42"),
    "unique_for": (60, lambda r: r["unique_key"] is None),
    "unique_states": ("live", lambda r: r["unique_key"] is None),
    "lease": (45, lambda r: r["options"]["lease"] == 45),
    # a job something waits for keeps its result: the callback reads it (canvas)
    "link": (signature("reg.next"), lambda r: r["options"]["followed"] is True),
    "link_error": (signature("reg.next"), lambda r: r["options"]["followed"] is True),
}


def entries(status: str) -> list[str]:
    return sorted(n for n, e in celery_compat.SEND_OPTIONS.items() if e.status == status)


def row(db: psycopg.Connection[Any], job_id: str) -> Row:
    with db.cursor(row_factory=dict_row) as cur:
        found = cur.execute("SELECT * FROM jobs WHERE id = %s", [job_id]).fetchone()
    assert found is not None
    return found


def count(db: psycopg.Connection[Any]) -> int:
    found = db.execute("SELECT count(*) FROM jobs").fetchone()
    assert found is not None
    return int(found[0])


@pytest.fixture(autouse=True)
def fresh_warnings() -> Iterator[None]:
    celery_compat._warned.clear()
    yield
    celery_compat._warned.clear()


@pytest.mark.parametrize("name", entries(IMPLEMENTED))
def test_an_implemented_send_option_marks_the_row(
        app: App, db: psycopg.Connection[Any], pg_dsn: str, name: str) -> None:
    if name == "connection":
        with psycopg.connect(pg_dsn) as conn:
            sent = app.send_task("reg.t", [1], connection=conn)
            conn.rollback()  # the job was part of that transaction
        assert count(db) == 0
        with psycopg.connect(pg_dsn) as conn:
            sent = app.send_task("reg.t", [1], connection=conn)
        assert row(db, sent.id)["args"] == [1]
        return
    assert name in SEND_SAMPLES, f"give {name!r} a sample in SEND_SAMPLES"
    value, shows = SEND_SAMPLES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scoped = name in ("unique_for", "unique_states")  # they scope a unique_key
        sent = app.send_task("reg.t", [1], **{name: value},
                             **({"unique_key": "only-one"} if scoped else {}))
    assert shows(row(db, sent.id)), row(db, sent.id)
    if scoped:
        assert db.execute("SELECT count(*) FROM unique_claims WHERE key = 'only-one'"
                          ).fetchone() == (1,)


@pytest.mark.parametrize("name", entries(IGNORED))
def test_an_ignored_send_option_is_accepted_with_its_reason(
        app: App, db: psycopg.Connection[Any], name: str) -> None:
    reason = celery_compat.SEND_OPTIONS[name].how
    with pytest.warns(UserWarning) as caught:
        ignored: dict[str, Any] = {name: True}
        sent = app.send_task("reg.t", [1], **ignored)
    assert [str(w.message) for w in caught] == [
        f"pgqueue ignores the apply_async option {name!r}: {reason}"]
    assert row(db, sent.id)["args"] == [1]


@pytest.mark.parametrize("name", entries(REFUSED))
def test_a_refused_send_option_inserts_nothing_and_names_the_alternative(
        app: App, db: psycopg.Connection[Any], name: str) -> None:
    with pytest.raises(TypeError) as caught:
        given: dict[str, Any] = {name: "x"}
        app.send_task("reg.t", [1], **given)
    assert str(caught.value) == (f"reg.t: option {name!r} is not supported: "
                                 f"{celery_compat.SEND_OPTIONS[name].how}")
    assert count(db) == 0


def test_an_unknown_send_option_is_refused_with_a_suggestion(
        app: App, db: psycopg.Connection[Any]) -> None:
    with pytest.raises(TypeError, match="unknown apply_async option 'countdwn'; did you "
                                        "mean 'countdown'"):
        app.send_task("reg.t", countdown=1, countdwn=1)
    assert count(db) == 0


# -- effects the registry points at -----------------------------------------------------

def test_task_default_retry_delay_sets_the_delay(app: App, db: psycopg.Connection[Any]) -> None:
    app.conf.task_default_retry_delay = 3600

    @app.task(name="reg.again", bind=True)
    def again(self: Any) -> str:
        if self.request.retries == 0:
            raise self.retry()
        return "second"

    @app.task(name="reg.own_delay", bind=True, default_retry_delay=0)
    def own_delay(self: Any) -> str:
        if self.request.retries == 0:
            raise self.retry()
        return "second"

    with running_worker(app):
        waiting = again.delay()
        assert own_delay.delay().get(timeout=30) == "second"  # the task's own wins
        waiting_row: Row = {}

        def retried() -> bool:
            waiting_row.update(row(db, waiting.id))
            return bool(waiting_row["state"] == "retry")

        wait_until(retried, timeout=30, message="the first attempt to ask for a retry")
    delay = waiting_row["run_at"] - datetime.now(timezone.utc)
    assert timedelta(minutes=55) < delay <= timedelta(hours=1)


@pytest.fixture
def look(app: App) -> None:
    @app.task(name="reg.look", bind=True)
    def look(self: Any) -> str:
        return str(self.request.queue)


@pytest.mark.usefixtures("look")
def test_a_routes_routing_key_names_the_queue(app: App) -> None:
    app.conf.task_routes = {"reg.look": {"routing_key": "by-key"}}
    with running_worker(app, queues=["by-key", "given"]):
        assert app.send_task("reg.look").get(timeout=10) == "by-key"
        app.conf.task_routes = {"reg.*": {"queue": "given", "routing_key": "by-key"}}
        assert app.send_task("reg.look").get(timeout=10) == "given"  # queue wins
        app.conf.task_routes = [lambda name, *_: {"routing_key": "by-key"}]
        assert app.send_task("reg.look").get(timeout=10) == "by-key"


@pytest.mark.parametrize(("route", "words"), [
    ({"exchange": "media", "routing_key": "media.image"},
     "option 'exchange' is not supported: pgqueue has no exchanges; name the queue with "
     "queue="),
    ({"queue": "q", "time_limit": 5}, "option 'time_limit' is not supported: a route "
                                      "carries expires, ignore_result"),
    ({"queue": "q", "exchange_type": "topic"}, "unknown route option 'exchange_type'"),
    ({"routing_key": "x\x00y"}, "task_routes: routing_key must be a string"),
])
def test_a_route_with_what_pgqueue_cannot_honour_is_refused_in_one_line(
        app: App, db: psycopg.Connection[Any], route: dict[str, Any], words: str) -> None:
    app.conf.task_routes = {"reg.*": route}
    with pytest.raises((TypeError, ValueError)) as caught:
        app.send_task("reg.look")
    assert words in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).startswith("reg.look: task_routes")
    assert count(db) == 0


def test_shadow_is_kept_in_the_results_row(app: App, db: psycopg.Connection[Any]) -> None:
    @app.task(name="reg.shadowed", bind=True)
    def shadowed(self: Any) -> Any:
        return [self.request.shadow, self.request.headers]

    with running_worker(app):
        job = shadowed.apply_async(shadow="reports.nightly", headers={"tenant": "acme"})
        assert job.get(timeout=10) == ["reports.nightly", {"tenant": "acme",
                                                           "shadow": "reports.nightly"}]
        plain = shadowed.delay()
        assert plain.get(timeout=10) == [None, None]
    found = db.execute("SELECT task, headers->>'shadow' FROM results WHERE id = %s",
                       [job.id]).fetchone()
    assert found == ("reg.shadowed", "reports.nightly")
    assert db.execute("SELECT headers FROM results WHERE id = %s",
                      [plain.id]).fetchone() == (None,)


def test_a_shadow_given_overrides_one_in_headers(app: App, db: psycopg.Connection[Any]) -> None:
    sent = app.send_task("reg.t", headers={"shadow": "old", "k": 1}, shadow="new",
                         task_id=uuid())
    assert row(db, sent.id)["headers"] == {"shadow": "new", "k": 1}


# Producer settings -> what the row of a job sent by name (no task here) holds.
ROW_SETTINGS: dict[str, tuple[Any, Callable[[Row], bool]]] = {
    "task_default_queue": ("mail", lambda r: r["queue"] == "mail"),
    "task_default_priority": (6, lambda r: r["priority"] == 6),
    "task_default_max_retries": (7, lambda r: r["max_retries"] == 7),
    "task_time_limit": (30, lambda r: r["options"]["time_limit"] == 30
                        and r["options"]["lease"] == 35),
    "task_soft_time_limit": (20, lambda r: r["options"]["soft_time_limit"] == 20),
    "task_track_started": (True, lambda r: r["options"]["track_started"] is True),
    "task_ignore_result": (True, lambda r: r["ignore_result"] is True),
}


@pytest.mark.parametrize("name", sorted(ROW_SETTINGS))
def test_a_producer_setting_shapes_the_row(app: App, db: psycopg.Connection[Any],
                                           name: str) -> None:
    value, shows = ROW_SETTINGS[name]
    app.conf[name] = value
    sent = app.send_task("reg.by_name", [1])
    assert shows(row(db, sent.id)), row(db, sent.id)


def test_worker_settings_shape_the_worker(app: App) -> None:
    from pgqueue.worker import Worker

    app.conf.update(worker_pool="processes", worker_concurrency=3, worker_lease_seconds=40,
                    worker_poll_interval=2.5, worker_shutdown_timeout=9,
                    worker_claim_batch_size=7, worker_max_tasks_per_child=11,
                    worker_max_memory_per_child=200_000, task_default_queue="mail")
    worker = Worker(app, install_signal_handlers=False)
    assert (worker.pool_name, worker.concurrency, worker.lease, worker.poll_interval,
            worker.shutdown_timeout, worker.claim_batch, worker.max_tasks_per_child,
            worker.max_memory_per_child, worker.queues) == (
        "processes", 3, 40, 2.5, 9, 7, 11, 200_000, ["mail"])


# -- task options and pgqueue's own settings ---------------------------------------------

# A value for every implemented task option that reaches the row, and what the row shows.
TASK_ROW_SAMPLES: dict[str, tuple[Any, Callable[[Row], bool]]] = {
    "queue": ("reports", lambda r: r["queue"] == "reports"),
    "priority": (7, lambda r: r["priority"] == 7),
    "max_retries": (1, lambda r: r["max_retries"] == 1),
    "ignore_result": (True, lambda r: r["ignore_result"] is True),
    "expires": (600, lambda r: r["expires_at"] is not None),
    "time_limit": (9, lambda r: r["options"]["time_limit"] == 9),
    "soft_time_limit": (8, lambda r: r["options"]["soft_time_limit"] == 8),
    "track_started": (True, lambda r: r["options"]["track_started"] is True),
    "lease": (45, lambda r: r["options"]["lease"] == 45),
    "serializer": ("json", lambda r: r["args"] == [1]),
}


@pytest.mark.parametrize("name", sorted(TASK_ROW_SAMPLES))
def test_a_task_option_shapes_the_rows_of_its_jobs(app: App, db: psycopg.Connection[Any],
                                                   name: str) -> None:
    value, shows = TASK_ROW_SAMPLES[name]
    task = app.task(name=f"reg.opt_{name}", **{name: value})(lambda x: x)
    sent = task.delay(1)
    assert shows(row(db, sent.id)), row(db, sent.id)


def test_argument_limits_refuse_what_is_over_them(app: App, db: psycopg.Connection[Any]) -> None:
    app.send_task("reg.t", ["x" * 200, [[[1]]]])  # the defaults let both through
    app.conf.task_max_args_bytes = 100
    with pytest.raises(ValueError, match="task_max_args_bytes"):
        app.send_task("reg.t", ["x" * 200])
    app.conf.task_max_args_bytes = 10_000
    app.conf.task_max_args_depth = 2
    with pytest.raises(ValueError, match="task_max_args_depth"):
        app.send_task("reg.t", [[[[1]]]])
    assert count(db) == 1


def test_process_settings_shape_pools_and_leader_services(app: App) -> None:
    from pgqueue.services.maintenance import Maintenance, leader_services
    from pgqueue.services.scheduler import Scheduler

    app.conf.update(producer_pool_size=2, worker_finish_batch_size=5, stage_interval=0.7,
                    maintenance_interval=1.3, leader_ttl_seconds=9,
                    beat_max_loop_interval=2.5)
    app.send_task("reg.t", [1])
    assert app._get_pool().max_size == 2
    stager, rescuer = leader_services(app)[:2]
    election = Maintenance(app, "holder", []).election
    assert (stager.interval, rescuer.interval, election.ttl) == (0.7, 1.3, 9)
    assert Scheduler(app, code_schedules=False).max_interval == 2.5
    with running_worker(app) as worker:
        assert worker.finisher.batch_size == 5
