"""``pgqueue.signals.Signal`` behaves as Celery's: decorator forms, senders by object or
task name, weak receivers, dispatch_uid, and receivers that raise."""

from __future__ import annotations

import gc
import logging
from typing import Any

import pytest

from pgqueue import App, signals
from pgqueue.signals import Signal


def test_decorator_forms_and_send_returns_receiver_response_pairs() -> None:
    sig = Signal("demo")

    @sig.connect
    def plain(sender: Any, **kwargs: Any) -> str:
        return f"plain {sender} {sorted(kwargs)}"

    @sig.connect(sender="only-me", weak=False)
    def filtered(sender: Any, **kwargs: Any) -> str:
        return "filtered"

    def direct(**kwargs: Any) -> str:
        return "direct"

    assert sig.connect(direct) is direct
    assert sig.send(sender="someone", x=1) == [
        (plain, "plain someone ['signal', 'x']"), (direct, "direct")]
    assert [r for _, r in sig.send(sender="only-me")] == [
        "plain only-me ['signal']", "filtered", "direct"]
    assert repr(sig) == "<Signal: demo>"


def test_a_task_and_its_name_are_the_same_sender() -> None:
    app = App("signals", set_as_current=False)

    @app.task(name="proj.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="proj.other")
    def other() -> None:
        pass

    sig = Signal("task-sender")
    seen: list[str] = []

    def by_name(sender: Any, **kwargs: Any) -> None:
        seen.append(f"by name: {sender}")

    def by_task(sender: Any, **kwargs: Any) -> None:
        seen.append(f"by task: {sender}")

    sig.connect(by_name, sender="proj.add")
    sig.connect(by_task, sender=add)
    sig.send(sender=add)
    sig.send(sender="proj.add")  # the publish signals send the name
    sig.send(sender=other)
    assert seen == ["by name: <@task: proj.add>", "by task: <@task: proj.add>",
                    "by name: proj.add", "by task: proj.add"]
    assert sig.has_receivers_for(add) and not sig.has_receivers_for(other)


def test_weak_receivers_go_with_their_function_strong_ones_stay() -> None:
    sig = Signal("weak")

    def make(label: str) -> Any:
        def receiver(**kwargs: Any) -> str:
            return label
        return receiver

    sig.connect(make("weak"))  # nothing else refers to it
    sig.connect(make("strong"), weak=False)

    class Holder:
        def method(self, **kwargs: Any) -> str:
            return "method"

    holder = Holder()
    sig.connect(holder.method)  # a bound method: a WeakMethod, alive with its object
    gc.collect()
    assert [r for _, r in sig.send()] == ["strong", "method"]
    del holder
    gc.collect()
    assert [r for _, r in sig.send()] == ["strong"]


def test_dispatch_uid_connects_once_and_disconnect_removes() -> None:
    sig = Signal("uid")
    calls: list[str] = []

    def first(**kwargs: Any) -> None:
        calls.append("first")

    def second(**kwargs: Any) -> None:
        calls.append("second")

    sig.connect(first, dispatch_uid="audit")
    sig.connect(second, dispatch_uid="audit")  # same uid: not added again
    sig.connect(first)
    sig.connect(first)  # same function, same sender: once
    sig.send()
    assert calls == ["first", "first"]
    assert sig.disconnect(dispatch_uid="audit")
    assert sig.disconnect(first)
    assert not sig.disconnect(first)
    assert sig.send() == []


def test_receivers_that_raise_are_logged_and_the_rest_still_run(
        caplog: pytest.LogCaptureFixture) -> None:
    sig = Signal("hostile")
    boom = RuntimeError("receiver broke")

    def raises(**kwargs: Any) -> None:
        raise boom

    def exits(**kwargs: Any) -> None:
        raise SystemExit(2)

    def fine(**kwargs: Any) -> str:
        return "fine"

    sig.connect(raises)
    sig.connect(fine)
    with caplog.at_level(logging.ERROR, "pgqueue.signals"):
        assert sig.send() == [(raises, boom), (fine, "fine")]
    assert "Signal handler" in caplog.text and "receiver broke" in caplog.text
    sig.connect(exits)
    with pytest.raises(SystemExit):  # send() lets a SystemExit through, as Celery does
        sig.send()
    responses = sig.send_contained()  # the worker's form catches it too
    assert isinstance(responses[2][1], SystemExit)


def test_bad_connections_fail_at_connect() -> None:
    sig = Signal("bad")
    with pytest.raises(TypeError, match="unknown option retry"):
        sig.connect(lambda **kw: None, weak=False, retry=True)
    with pytest.raises(TypeError, match="must be callable"):
        sig.connect(42)  # type: ignore[arg-type]
    class Slotted:
        __slots__ = ()

        def __call__(self, **kwargs: Any) -> None:
            pass

    with pytest.raises(TypeError, match="cannot be weakly referenced; connect it with weak"):
        sig.connect(Slotted())
    sig.connect(Slotted(), weak=False)
    with pytest.raises(TypeError, match="give the receiver or its dispatch_uid"):
        sig.disconnect()


def test_celerys_signal_set_is_there() -> None:
    for name in signals.__all__:
        if name != "Signal":
            assert isinstance(getattr(signals, name), Signal), name
            assert getattr(signals, name).name == name
    assert len(signals.__all__) == 28
