"""Events: a worker with events on publishes Celery's event types over NOTIFY, in order;
`app.events.Receiver` and `pgqueue events` receive them; with events off, none is sent."""

from __future__ import annotations

import json
import subprocess
import threading
from typing import Any

import psycopg
import pytest

from pgqueue import App
from pgqueue.event_listeners import listening
from pgqueue.events import MAX_PAYLOAD, encode
from tests.conftest import running_worker, wait_until
from tests.integration.ops.helpers import PGQUEUE, ROOT, TASKS, pgqueue, tasks


class Capture:
    """Events received by a Receiver running in a thread, until ``marker`` arrives."""

    def __init__(self, app: App, marker: str = "test-marker") -> None:
        self.events: list[dict[str, Any]] = []
        self.marker = marker
        self.listening = threading.Event()
        self.done = threading.Event()
        self.last = False  # the next marker ends the capture (and the receiver's connection)
        self.app = app
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        wait_until(self.listening.is_set, 20, message="receiver listening")

    def _run(self) -> None:
        conn = psycopg.connect(self.app.dsn, autocommit=True)
        received = self.app.events.Receiver(conn).itercapture(timeout=120)
        self.listening.set()  # LISTEN runs first thing in capture; a marker confirms it
        try:
            for event in received:
                if event["type"] != self.marker:
                    self.events.append(event)
                    continue
                self.done.set()
                if self.last:
                    return
        finally:
            received.close()  # the receiver's row goes before its connection
            conn.close()

    def finish(self, last: bool = True) -> list[dict[str, Any]]:
        """Send markers until one comes back: every event sent before it has arrived.
        ``last``: the receiver stops there."""
        self.last = last
        dispatcher = self.app.events.Dispatcher("tests@marker")
        wait_until(lambda: (dispatcher.flush([encode({"type": self.marker})]), self.done.wait(
            0.5))[1], 30, message="marker received")
        dispatcher.stop()
        if last:
            self.thread.join(10)
        return self.events

    def of(self, uuid: str) -> list[str]:
        return [e["type"] for e in self.events if e.get("uuid") == uuid]


def _wait_listening(capture: Capture) -> None:
    """The receiver LISTENs once a marker comes through, and publishers send once they
    have seen its row: they look once a second (event_listeners.RECHECK), and a look from
    before the receiver registered (the marker's own dispatcher makes one) would drop
    the test's first events."""
    capture.finish(last=False)
    capture.done.clear()
    capture.events.clear()
    wait_until(lambda: listening(capture.app), 10, message="publishers see the receiver")


def test_task_events_in_order_with_celery_fields(app: App) -> None:
    found = tasks(app)

    @app.task(name="ops.boom")
    def boom() -> None:
        raise KeyError("boom")

    @app.task(name="ops.again", bind=True, max_retries=1, default_retry_delay=0.1)
    def again(self: Any) -> str:
        if self.request.retries == 0:
            raise self.retry(exc=ValueError("once more"))
        return "ok"

    capture = Capture(app)
    _wait_listening(capture)
    with running_worker(app, name="ev@test", task_events=True):
        ok = found["add"].delay(2, 3)
        failed = boom.delay()
        retried = again.delay()
        assert ok.get(timeout=30) == 5
        assert retried.get(timeout=30) == "ok"
        failed.get(timeout=30, propagate=False)
    # After the worker stopped: worker-offline comes before the marker, not after it.
    events = capture.finish()
    assert capture.of(ok.id) == ["task-received", "task-started", "task-succeeded"]
    assert capture.of(failed.id) == ["task-received", "task-started", "task-failed"]
    assert capture.of(retried.id) == ["task-received", "task-started", "task-retried",
                                      "task-received", "task-started", "task-succeeded"]
    received = next(e for e in events if e.get("uuid") == ok.id)
    assert received["name"] == "ops.add" and received["args"] == "[2, 3]"
    assert received["hostname"] == "ev@test" and isinstance(received["timestamp"], float)
    succeeded = next(e for e in events if e.get("uuid") == ok.id
                     and e["type"] == "task-succeeded")
    assert succeeded["result"] == "5" and succeeded["runtime"] >= 0
    failure = next(e for e in events if e["type"] == "task-failed")
    assert "KeyError" in failure["exception"] and "Traceback" in failure["traceback"]
    kinds = [e["type"] for e in events if e["hostname"] == "ev@test"]
    assert kinds[0] == "worker-online" and kinds[-1] == "worker-offline"
    clocks = [e["clock"] for e in events if e["hostname"] == "ev@test"]
    assert clocks == sorted(clocks)


def test_no_event_while_events_are_off(app: App) -> None:
    found = tasks(app)
    capture = Capture(app)
    _wait_listening(capture)
    with running_worker(app, name="quiet@test") as worker:
        assert found["add"].delay(1, 1).get(timeout=30) == 2
        assert capture.finish() == []
        assert worker.events.sent == 0


def test_a_snooze_sends_no_failure_event(app: App) -> None:
    """A snoozed attempt has not ended: its next run sends the outcome's event."""
    capture = Capture(app)
    _wait_listening(capture)
    snoozed = threading.Event()

    @app.task(bind=True, name="ev.snooze_once")
    def snooze_once(self: Any) -> str:
        if not snoozed.is_set():
            snoozed.set()
            raise self.snooze(0.2)
        return "done"

    with running_worker(app, name="snooze@test", task_events=True):
        result = snooze_once.delay()
        assert result.get(timeout=30) == "done"
    capture.finish()  # after the worker stopped: it flushed every event
    assert capture.of(result.id) == ["task-received", "task-started",
                                     "task-received", "task-started", "task-succeeded"]


def test_events_of_the_processes_pool(app: App) -> None:
    found = tasks(app)
    capture = Capture(app)
    _wait_listening(capture)
    with running_worker(app, name="proc@test", pool="processes", concurrency=1,
                        task_events=True):
        result = found["add"].delay(20, 22)
        assert result.get(timeout=60) == 42
    capture.finish()  # after the worker stopped: it flushed every event
    assert capture.of(result.id) == ["task-received", "task-started", "task-succeeded"]


def test_the_setting_turns_task_events_on(app: App) -> None:
    found = tasks(app)
    app.conf.worker_send_task_events = True
    capture = Capture(app)
    _wait_listening(capture)
    with running_worker(app, name="set@test") as worker:
        assert worker.events.wanted
        # publishing starts once the worker has seen the receiver (checked once a second)
        wait_until(lambda: worker.events.enabled, timeout=20, message="events published")
        result = found["add"].delay(2, 2)
        assert result.get(timeout=30) == 4
    capture.finish()  # after the worker stopped: it flushed every event
    assert capture.of(result.id) == ["task-received", "task-started", "task-succeeded"]


def test_enable_events_turns_them_on_in_a_running_worker(app: App) -> None:
    found = tasks(app)
    capture = Capture(app)
    _wait_listening(capture)
    with running_worker(app, name="later@test") as worker:
        app.control.enable_events(reply=True, timeout=10)
        wait_until(lambda: worker.events.enabled, timeout=20, message="events published")
        result = found["add"].delay(1, 2)
        assert result.get(timeout=30) == 3
    capture.finish()  # after the worker stopped: it flushed every event
    assert capture.of(result.id) == ["task-received", "task-started", "task-succeeded"]


def test_task_sent_and_revoked(app: App) -> None:
    found = tasks(app)
    app.conf.task_send_sent_event = True
    capture = Capture(app)
    _wait_listening(capture)
    result = found["add"].apply_async((1, 2), countdown=600, queue="q1")
    capture.finish()
    [sent] = [e for e in capture.events if e.get("uuid") == result.id]
    assert sent["type"] == "task-sent" and sent["name"] == "ops.add"
    assert sent["queue"] == "q1" and sent["args"] == "(1, 2)" or sent["args"] == "[1, 2]"


def test_big_arguments_are_cut_so_every_event_fits(app: App) -> None:
    found = tasks(app)
    capture = Capture(app)
    _wait_listening(capture)
    with running_worker(app, name="big@test", task_events=True):
        result = found["add"].delay("x" * 100_000, "y" * 50_000)
        assert result.get(timeout=30) == "x" * 100_000 + "y" * 50_000
    capture.finish()  # after the worker stopped: it flushed every event
    assert capture.of(result.id) == ["task-received", "task-started", "task-succeeded"]
    for event in capture.events:
        assert len(json.dumps(event).encode()) < MAX_PAYLOAD + 200
    received = next(e for e in capture.events if e["type"] == "task-received")
    assert len(received["args"]) <= 1100


def test_an_event_too_big_for_notify_is_cut() -> None:
    event = {"type": "task-failed", "uuid": "u", "traceback": "T" * 50_000 + "the error",
             "exception": "E" * 20_000}
    payload = encode(event)
    assert len(payload.encode()) < MAX_PAYLOAD
    decoded = json.loads(payload)
    assert decoded["traceback"].endswith("the error")


def test_custom_events_with_hostile_text_arrive_whole_and_in_order(app: App) -> None:
    """A batch goes out as its payloads joined by newlines (one statement): text that
    holds newlines, quotes, backslashes, NUL, non-ASCII or a head field's name must
    neither split an event nor merge two."""
    capture = Capture(app)
    _wait_listening(capture)
    nasty = ['line one\nline two\r\n', 'quote " backslash \\ tab \t', "nul \x00 end",
             "é ü 漢字 \U0001f600", "\u2028\u2029", ""]
    dispatcher = app.events.Dispatcher("tests@custom")
    wait_until(lambda: dispatcher.enabled, 10, message="dispatcher sees the receiver")
    for n, text in enumerate(nasty):
        dispatcher.send("custom-text", n=n, text=text, nested={"list": [text, None, 1.5]})
    dispatcher.send("custom-big", text="x" * 20_000)  # over the NOTIFY limit: cut
    dispatcher.send("custom-nan", value=float("nan"))
    dispatcher.send("custom-head", hostname="given@host", clock=-1)
    dispatcher.stop()
    events = [e for e in capture.finish() if e["hostname"] != "tests@marker"]
    texts = [e for e in events if e["type"] == "custom-text"]
    assert [e["n"] for e in texts] == list(range(len(nasty)))
    assert [e["text"] for e in texts] == nasty
    assert [e["type"] for e in events if e["type"] == "custom-big"] == ["custom-big"]
    assert texts[0]["nested"] == {"list": [nasty[0], None, 1.5]}
    nan = next(e for e in events if e["type"] == "custom-nan")
    assert nan["value"] != nan["value"]
    head = next(e for e in events if e["type"] == "custom-head")
    assert (head["hostname"], head["clock"]) == ("given@host", -1)
    assert [e["clock"] for e in texts] == sorted(e["clock"] for e in texts)


def test_a_notify_that_is_not_an_event_is_skipped(app: App,
                                                  db: psycopg.Connection[Any]) -> None:
    capture = Capture(app)
    _wait_listening(capture)
    for junk in ("not json", "[1, 2]", '{"no": "type"}', '{"type": 5}'):
        db.execute("SELECT pg_notify(%s, %s)", [app.queries.events_channel, junk])
    db.execute("SELECT pg_notify(%s, %s)", [app.queries.events_channel,
                                            '{"type": "custom", "hostname": "h"}'])
    events = capture.finish()
    assert [e["type"] for e in events] == ["custom"]


def test_receiver_hostile_input(app: App) -> None:
    with pytest.raises(TypeError, match="connection"):
        app.events.Receiver(connection=42)
    with pytest.raises(ValueError, match="limit"):
        list(app.events.Receiver().itercapture(limit=0))


def test_events_command_with_a_worker_process(app: App, pg_dsn: str, schema: str) -> None:
    import os
    import signal

    env = {**os.environ, "PGQUEUE_DSN": pg_dsn, "PGQUEUE_SCHEMA": schema}
    worker = subprocess.Popen([PGQUEUE, "worker", "-A", TASKS, "-E", "-n", "cli@test",
                               "-Q", "evq"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, cwd=ROOT, env=env)
    tail = subprocess.Popen([PGQUEUE, "events", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    lines: list[dict[str, Any]] = []
    reader = threading.Thread(target=lambda: lines.extend(
        json.loads(line) for line in tail.stdout or []), daemon=True)
    reader.start()
    dispatcher = app.events.Dispatcher("tests@marker")
    try:
        wait_until(lambda: (dispatcher.flush([encode({"type": "marker"})]),
                            any(e["type"] == "marker" for e in lines))[1], 60, interval=0.5,
                   message="tail listening")
        wait_until(lambda: pgqueue("status", "-t", "5", dsn=pg_dsn, schema=schema)
                   .returncode == 0, 60, interval=0.5, message="worker up")
        # the worker publishes once it has seen the tail's row (worker-online, or the
        # heartbeat every 2 s when it looked before the tail registered)
        wait_until(lambda: any(e.get("hostname") == "cli@test" for e in lines), 60,
                   message="worker publishing")
        result = app.send_task("core.add", (4, 5), queue="evq")
        assert result.get(timeout=60) == 9
        wait_until(lambda: any(e.get("uuid") == result.id and e["type"] == "task-succeeded"
                               for e in lines), 60, message="task-succeeded in the tail")
    finally:
        dispatcher.stop()
        worker.terminate()
        worker.wait(30)
        tail.send_signal(signal.SIGINT)
        tail.wait(30)
    assert tail.returncode == 0
    mine = [e["type"] for e in lines if e.get("uuid") == result.id]
    assert mine == ["task-received", "task-started", "task-succeeded"]
    assert "worker-offline" in [e["type"] for e in lines if e.get("hostname") == "cli@test"]
    dump = subprocess.run([PGQUEUE, "events", "--dump", "--limit", "1", "--timeout", "0.5"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert dump.returncode == 0 and dump.stdout == ""


# -- pgqueue events --json prints payloads as they came ------------------------------------
def _json_payloads() -> tuple[list[str], list[str]]:
    """What publishers send (pgqueue's own encoding), and what any role that may NOTIFY
    could send instead."""
    made = [encode({"type": "task-succeeded", "hostname": "w@h", "timestamp": 1.5e9,
                    "utcoffset": 0, "pid": 7, "clock": n, "uuid": f"id-{n}",
                    "result": text, "runtime": 0.25})
            for n, text in enumerate([
                "plain", 'quote " backslash \\ slash / tab \t', "line\nbreak\r\n",
                "é ü 漢字 \U0001f600 \u2028\u2029", "nul \x00 end", "\ud800 lone", ""])]
    made += [encode({"type": "custom-big", "hostname": "w@h", "text": "x" * 20_000}),
             encode({"type": "custom-deep", "hostname": "w@h",
                      "nested": {"list": [1, [2, {"three": None}], 1e300, -0.0, 2 ** 70]}}),
             encode({"type": "custom-nan", "value": float("nan"), "inf": float("-inf")})]
    hostile = [
        '{"type":"raw","text":"é 漢字"}',  # not ASCII: was escaped, still is
        '{\n  "type": "pretty",\n  "n": 1\n}',  # several lines: one line out
        '  {"type":"leading-space"}', '{"type":"trailing-space"}  ',
        '{"type":"twice","uuid":"first","uuid":"second"}',  # the last one counts, once
        '{"type":"nested-twice","x":{"a":1,"a":2}}',
        '{"type":"own-local","local_received":"forged","after":1}',
        '{"type":"escapes","s":"\\/ \\u0041 \\ud83d\\ude00 \\"","n":1.50,"e":1E3}',
        '{"type":"' + "t" * 7000 + '"}',
    ]
    return made, hostile


def _pairs(line: str) -> list[tuple[str, Any]]:
    return json.loads(line, object_pairs_hook=list)  # type: ignore[no-any-return]


def test_events_json_prints_payloads_as_received_and_every_line_reads_as_before(
        app: App, pg_dsn: str, schema: str, db: psycopg.Connection[Any]) -> None:
    """`pgqueue events --json` prints a payload of pgqueue's as it came, with
    local_received added, and re-encodes only other ones: a JSON reader gets from each
    line what the command printed before (its json.dumps of the received event), field
    for field and in order; one line per event, ASCII; non-events skipped as before."""
    import os
    import time

    from pgqueue.events import json_encoder, parse

    made, hostile = _json_payloads()
    payloads = made + hostile
    junk = ["not json", "[1, 2]", '{"no": "type"}', '{"type": 5}', "", "{}"]
    env = {**os.environ, "PGQUEUE_DSN": pg_dsn, "PGQUEUE_SCHEMA": schema}
    tail = subprocess.Popen([PGQUEUE, "events", "--json", "--limit", str(len(payloads)),
                             "--timeout", "120"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT, env=env)
    try:
        wait_until(lambda: db.execute("SELECT count(*) FROM event_listeners").fetchone()
                   == (1,) or tail.poll() is not None, 60, message="the command listening")
        before = time.time()
        for n, payload in enumerate(payloads):
            db.execute("SELECT pg_notify(%s, %s)", [app.queries.events_channel, payload])
            if n < len(junk):
                db.execute("SELECT pg_notify(%s, %s)", [app.queries.events_channel, junk[n]])
        out, err = tail.communicate(timeout=120)
    finally:
        if tail.poll() is None:
            tail.kill()
    after = time.time()
    assert tail.returncode == 0, err
    assert out.isascii()
    lines = out.decode().splitlines()
    assert len(lines) == len(payloads)
    was = json_encoder(", ", ": ")  # what --json printed before
    for payload, line in zip(payloads, lines, strict=True):
        old = was(parse(payload))
        new = _pairs(line)
        assert repr([p for p in new if p[0] != "local_received"]) \
            == repr([p for p in _pairs(old) if p[0] != "local_received"]), (payload, line)
        assert [k for k, _ in new].count("local_received") == 1
        assert [k for k, _ in new][-1] == "local_received" or "own-local" in payload
        stamp = dict(new)["local_received"]
        assert isinstance(stamp, float) and before <= stamp <= after, line
    for payload, line in zip(made, lines[:len(made)], strict=True):  # as they came
        assert line.startswith(payload[:-1] + ',"local_received":'), payload
