"""Signatures and workflows as Celery builds them, and their JSON form."""

from __future__ import annotations

import json

import pytest

from pgqueue import App, Signature, chain, chord, chunks, group, signature, xmap, xstarmap


@pytest.fixture
def tasks() -> tuple[App, object, object]:
    app = App("unit", dsn="postgresql://localhost/unused", set_as_current=False)

    @app.task(name="add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="tsum")
    def tsum(values: list[int]) -> int:
        return sum(values)

    return app, add, tsum


def roundtrip(sig: Signature) -> Signature:
    return signature(json.loads(json.dumps(sig)))


def test_every_primitive_survives_json(tasks: tuple[App, object, object]) -> None:
    app, add, tsum = tasks
    workflows = [
        add.s(1, 2).set(queue="q", countdown=5),  # type: ignore[attr-defined]
        add.si(1, 2),  # type: ignore[attr-defined]
        chain(add.s(1, 1), add.s(2), group(add.s(3), add.s(4)), tsum.s()),  # type: ignore[attr-defined]
        chord([add.s(i, i) for i in range(3)], tsum.s()),  # type: ignore[attr-defined]
        chord([chord([add.s(1, 1)], tsum.s())], tsum.s()),  # type: ignore[attr-defined]
        add.chunks([(1, 2), (3, 4)], 1),  # type: ignore[attr-defined]
        add.map([1, 2]),  # type: ignore[attr-defined]
        add.starmap([(1, 2)]),  # type: ignore[attr-defined]
    ]
    for workflow in workflows:
        again = roundtrip(workflow)
        assert type(again) is type(workflow)
        assert json.loads(json.dumps(again)) == json.loads(json.dumps(workflow))
    assert roundtrip(add.si(1)).immutable  # type: ignore[attr-defined]
    assert isinstance(roundtrip(add.map([1])), xmap)  # type: ignore[attr-defined]
    assert isinstance(roundtrip(add.starmap([[1, 2]])), xstarmap)  # type: ignore[attr-defined]
    assert isinstance(roundtrip(add.chunks([[1, 2]], 1)), chunks)  # type: ignore[attr-defined]


def test_links_serialize_and_come_back(tasks: tuple[App, object, object]) -> None:
    app, add, tsum = tasks
    sig = add.s(1, 1)  # type: ignore[attr-defined]
    sig.link(add.s(2))  # type: ignore[attr-defined]
    sig.link_error(tsum.si([]))  # type: ignore[attr-defined]
    again = roundtrip(sig)
    assert again.options["link"][0]["task"] == "add"
    assert again.options["link_error"][0]["immutable"] is True


def test_pipe_builds_chains_and_chords(tasks: tuple[App, object, object]) -> None:
    app, add, tsum = tasks
    a, b, c = add.s(1, 1), add.s(2), add.s(3)  # type: ignore[attr-defined]
    assert (a | b).tasks == [a, b]
    assert [s.task for s in (a | b | c).tasks] == ["add"] * 3
    assert len((a | (b | c)).tasks) == 3
    made = group(a, b) | tsum.s()  # type: ignore[attr-defined]
    assert isinstance(made, chord) and made.body is not None
    assert made.body.task == "tsum"
    assert isinstance(chain(a, b) | group(c), chain)


def test_partials_clone_and_set(tasks: tuple[App, object, object]) -> None:
    app, add, _ = tasks
    partial = add.s(2)  # type: ignore[attr-defined]
    full = partial.clone((8,), {"z": 1}, queue="q")
    assert (full.args, full.kwargs, full.options) == ([8, 2], {"z": 1}, {"queue": "q"})
    assert partial.args == [2]  # the original is untouched
    frozen = add.si(1).clone((5,))  # type: ignore[attr-defined]
    assert frozen.args == [1]  # immutable: partial args are ignored
    assert add.s(1).set(immutable=True).immutable  # type: ignore[attr-defined]
    assert repr(add.s(1, y=2)) == "add(1, y=2)"  # type: ignore[attr-defined]
    assert add.s(2, 3)() == 5  # type: ignore[attr-defined]


def test_bad_input_is_refused_in_one_line(tasks: tuple[App, object, object]) -> None:
    app, add, _ = tasks
    with pytest.raises(TypeError, match="signature args must be a list"):
        Signature("add", "12")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n must be a whole number"):
        add.chunks([(1, 2)], 0)  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="iterable of arguments"):
        add.map("abc")  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="unknown signature type"):
        signature({"task": "x", "args": [], "kwargs": {}, "options": {},
                   "subtask_type": "spiral"})
    with pytest.raises(TypeError, match="chord\\(header\\)\\(body\\)"):
        chord([add.s(1, 1)])()  # type: ignore[attr-defined]
