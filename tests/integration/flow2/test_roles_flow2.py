"""The group roles and the new tables: a producer takes claims, a worker prunes them, an
operator (control) retries by hand and reads the history."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from pgqueue import App
from pgqueue.db.connection import Dedicated
from pgqueue.exceptions import PermissionDenied
from pgqueue.services.pruner import Pruner
from tests.conftest import running_worker, wait_until


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
