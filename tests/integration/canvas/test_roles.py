"""The group roles can run workflows: a producer sends them and reads their results and
groups, a worker advances them, the control role revokes their waiting steps."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pgqueue import App, GroupResult, chain, chord
from pgqueue.exceptions import TaskRevokedError
from tests.conftest import running_worker

GET = 60


def test_workflows_under_the_group_roles(schema: str, groups: dict[str, str],
                                         login: Callable[..., str]) -> None:
    worker_app = App("roles", dsn=login(groups["worker"]), schema=schema,
                     set_as_current=False)
    producer = App("roles", dsn=login(groups["producer"]), schema=schema,
                   set_as_current=False)
    operator = App("roles", dsn=login(groups["control"], groups["producer"]), schema=schema,
                   set_as_current=False)
    try:
        for app in (worker_app, producer, operator):
            app.task(name="add")(lambda x, y: x + y)
            app.task(name="tsum")(lambda values: sum(values))
        add, tsum = producer.tasks["add"], producer.tasks["tsum"]
        waiting = chain(add.s(1, 1), add.s(1)).apply_async()
        operator.AsyncResult(waiting.id).revoke()  # a step still waiting: control role
        # a purge by the control role ends what waits for the purged job
        purged = chain(add.s(2, 2), add.s(1)).apply_async(queue="held")
        assert operator.control.purge(["held"]) == 1
        with pytest.raises(TaskRevokedError):
            purged.get(timeout=GET)
        with running_worker(worker_app, concurrency=2):
            result = chord([add.s(i, i) for i in range(5)], tsum.s()).apply_async()
            assert result.get(timeout=GET) == 20
            restored = GroupResult.restore(result.parent.id, app=producer)
            assert restored is not None and restored.get(timeout=GET) == [0, 2, 4, 6, 8]
            assert [c.id for c in waiting.parent.children] == [waiting.id]
            with pytest.raises(TaskRevokedError):
                waiting.get(timeout=GET)
            assert waiting.parent.get(timeout=GET) == 2
            # a workflow's starter job (a periodic entry's) claims its start as the worker
            starter = producer.send_task("celery.chain", [],
                                         dict(chain(add.s(1, 2), add.s(10)))["kwargs"])
            assert producer.AsyncResult(starter.get(timeout=GET)).get(timeout=GET) == 13
    finally:
        for app in (worker_app, producer, operator):
            app.close()
