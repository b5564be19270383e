"""``task-revoked`` for jobs revoked before they started: sent by the process that
revokes them, when its configuration turns events on; never otherwise."""

from __future__ import annotations

import pytest

from pgqueue import App, chain
from tests.conftest import running_worker, wait_until
from tests.integration.ops.helpers import tasks
from tests.integration.ops.test_events import Capture, _wait_listening


@pytest.mark.parametrize("setting", ["worker_send_task_events", "task_send_sent_event"])
def test_revoking_queued_jobs_sends_celerys_task_revoked(app: App, setting: str) -> None:
    found = tasks(app)
    setattr(app.conf, setting, True)
    capture = Capture(app)
    _wait_listening(capture)
    # Given queued jobs (one with a task id of its own) and a chain's waiting step
    first = found["add"].apply_async((1, 2), countdown=600)
    named = found["add"].apply_async((3, 4), countdown=600, task_id="order-42")
    steps = chain(found["add"].s(1, 1), found["add"].s(2)).apply_async(countdown=600)
    # When they are revoked
    revoked = app.control.revoke([first.id, named.id, steps.id])
    assert sorted(revoked) == sorted([first.id, "order-42", steps.id])
    capture.finish()
    # Then one task-revoked each, with Celery's fields, under the id as sent
    events = [e for e in capture.events if e["type"] == "task-revoked"]
    assert sorted(e["uuid"] for e in events) == sorted(revoked)
    for event in events:
        assert (event["terminated"], event["signum"], event["expired"]) == (False, None, False)
        assert {"hostname", "timestamp", "pid", "clock", "utcoffset"} <= set(event)


def test_no_task_revoked_while_events_are_off(app: App) -> None:
    found = tasks(app)
    capture = Capture(app)
    _wait_listening(capture)
    result = found["add"].apply_async((1, 2), countdown=600)
    assert app.control.revoke(result.id) == [result.id]
    assert capture.finish() == []


def test_nothing_revoked_sends_nothing(app: App) -> None:
    """Unknown ids, text that can be no job's id, a job already done, a running job
    without terminate: no job is revoked before it started, so no event is sent."""
    found = tasks(app)
    app.conf.worker_send_task_events = True
    capture = Capture(app)
    _wait_listening(capture)
    with running_worker(app, name="rev@test"):
        done = found["add"].delay(1, 2)
        assert done.get(timeout=30) == 3
        running = found["block"].delay(30)
        wait_until(lambda: (app.control.inspect().active() or {}).get("rev@test"), 30,
                   message="job running")
        assert app.control.revoke(["no-such-job", "\x00" * 5000, "", done.id,
                                   running.id]) == []
        app.control.revoke(running.id, terminate=True)
        wait_until(lambda: running.state == "REVOKED", 30, message="job terminated")
    capture.finish()  # after the worker stopped: it flushed every event
    revoked = [e for e in capture.events if e["type"] == "task-revoked"]
    # the worker reports the job it terminated (worker_send_task_events is its setting too)
    assert [(e["uuid"], e["terminated"]) for e in revoked] == [(running.id, True)]
