"""The group roles and the new tables: a producer takes claims, a worker prunes them, an
operator (control) retries by hand and reads the history."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from pgqueue import App
from pgqueue.db.connection import Dedicated
from pgqueue.exceptions import PermissionDenied
from pgqueue.services.pruner import Pruner
from tests.conftest import running_worker, wait_until
from tests.login_roles import login_roles, with_group_roles


@pytest.fixture
def groups(pg_dsn: str, schema: str) -> dict[str, str]:
    return with_group_roles(pg_dsn, schema)


@pytest.fixture
def login(pg_dsn: str) -> Iterator[Callable[..., str]]:
    with login_roles(pg_dsn) as make:
        yield make


@pytest.fixture
def apps(schema: str) -> Iterator[Callable[[str], App]]:
    made: list[App] = []

    def make(dsn: str) -> App:
        made.append(App("roles", dsn=dsn, schema=schema, set_as_current=False))
        return made[-1]

    yield make
    for app in made:
        app.close()


def test_each_role_does_its_part(app: App, groups: dict[str, str], login: Callable[..., str],
                                 apps: Callable[[str], App],
                                 db: psycopg.Connection[Any]) -> None:
    producer = apps(login(groups["producer"]))
    first = producer.send_task("t.boom", unique_key="k", unique_for=60)
    again = producer.send_task("t.boom", unique_key="k", unique_for=60)
    producer.send_task("t.boom", unique_key="short", unique_for=0.1)
    assert again.duplicate and again.id == first.id
    with pytest.raises(PermissionDenied, match=f"needs the {groups['control']} role"):
        producer.retry([first.id])

    worker = apps(login(groups["worker"]))

    @worker.task(name="t.boom", max_retries=0)
    def boom() -> None:
        raise ValueError("boom")

    with running_worker(worker), pytest.raises(ValueError):
        first.get(timeout=20)
    wait_until(lambda: db.execute("SELECT count(*) FROM unique_claims WHERE key = 'short' "
                                  "AND expires_at > now()").fetchone() == (0,),
               message="the short claim to expire")  # (the worker's leader may prune it)
    conn = Dedicated(worker.dsn, worker.schema, "test-pruner")
    try:
        Pruner(worker.queries, result_expires=3600, worker_ttl=3600).run_once(conn)
    finally:
        conn.close()
    assert [r[0] for r in db.execute("SELECT key FROM unique_claims").fetchall()] == ["k"]

    operator = apps(login(groups["control"], groups["reader"]))
    retried = operator.retry(task="t.boom", since=3600)
    assert first.id in {r.id for r in retried}
    retried = [r for r in retried if r.id == first.id]
    history: list[dict[str, Any]] = retried[0].history()
    assert [h["state"] for h in history] == ["FAILURE"]
