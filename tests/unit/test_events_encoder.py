"""The events publisher's JSON encoder (pgqueue.events.json_encoder): built once through
``json.encoder.c_make_encoder`` where the interpreter has it, else (or when that private
signature no longer fits) ``json.JSONEncoder(...).encode``. Both write what
``json.dumps(value, separators=(",", ":"), default=str)`` writes: NaN and the
infinities as Python's json writes them, ASCII only (an event's length is its size in
bytes), anything else through ``str``."""

from __future__ import annotations

import datetime
import decimal
import enum
import json
import json.encoder
import math
import platform
from collections.abc import Callable
from typing import Any

import pytest

from pgqueue import events


class Colour(enum.IntEnum):
    RED = 1


class Loud(float):
    def __repr__(self) -> str:  # json writes float.__repr__, not this
        return "LOUD"


class Tagged(str):
    pass


class Opaque:
    def __str__(self) -> str:
        return "opaque \u00e9\x00"


def _deep(depth: int) -> Any:
    value: Any = "bottom \u2603"
    for level in range(depth):
        value = [value, {"level": level}] if level % 2 else {"d": value, "n": -level}
    return value


HOSTILE: dict[str, Any] = {
    "non-ascii": ["\u00e9t\u00e9", "\u4e2d\u6587", "\U0001f600", "\u2028\u2029",
                  "\ud800 lone surrogate", "\x00\x1f\x7f", '"quoted\\"', "\ufeff"],
    "non-ascii-keys": {"cl\u00e9": 1, "\U0001f511": {"\u00fc": "\u00fc"}, "": None},
    "nan-and-infinities": [math.nan, math.inf, -math.inf, {"x": math.nan}],
    "floats": [-0.0, 5e-324, 1e300, -1.7976931348623157e308, 0.1, 1e16, 1e22,
               Loud(2.5)],
    "large-ints": [10**100, -(2**63), 2**64, 2**53 + 1, 10**4000, -(10**4299),
                   Colour.RED, True, False],
    "keys-json-turns-into-strings": {7: "int", 2.5: "float", None: "none", False: "bool",
                                     Colour.RED: "enum", -(10**30): "big"},
    "nested": _deep(300),
    "through-str": [Opaque(), decimal.Decimal("1.10"), datetime.date(2026, 12, 31),
                    b"bytes\xff", frozenset({3}), Tagged("tagged \u00e9")],
    "empties": [[], {}, "", (), [[]], {"": {}}],
    "tuple-as-list": ("a", (1, (2.0, None))),
    "event": {"type": "task-failed", "hostname": "w\u00e9@h\u00f4te", "timestamp": 1.5e9,
              "uuid": "6f1c2e0a-3b4d-4e5f-8a6b-7c8d9e0f1a2b", "exception": "Boom('\u2603')",
              "traceback": "line\nline\r\n\ttab", "runtime": math.inf, "retries": 10**20},
    "a-string": "just \u00e9 a string",
    "a-number": math.nan,
    "none": None,
}


def _reference(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


@pytest.fixture
def encode_called(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """``JSONEncoder.encode`` records each call, so a test sees when the fallback ran
    (json_encoder binds it when it builds the encoder)."""
    calls: list[Any] = []
    real = json.JSONEncoder.encode

    def spy(self: json.JSONEncoder, value: Any) -> str:
        calls.append(value)
        return real(self, value)

    monkeypatch.setattr(json.JSONEncoder, "encode", spy)
    return calls


def _without_the_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    """json as on an interpreter without its C accelerator."""
    monkeypatch.setattr(json.encoder, "c_make_encoder", None)
    monkeypatch.setattr(json.encoder, "encode_basestring_ascii",
                        json.encoder.py_encode_basestring_ascii)


def test_the_publisher_encodes_with_the_c_encoder_built_once(
        monkeypatch: pytest.MonkeyPatch, encode_called: list[Any]) -> None:
    real = json.encoder.c_make_encoder
    if platform.python_implementation() == "CPython":
        assert real is not None, "CPython without json's C accelerator"
    if real is None:
        pytest.skip("no C accelerator here: the fallback tests cover this interpreter")
    # the module's own encoder, built at import: not the fallback's bound method
    assert not isinstance(getattr(events._json, "__self__", None), json.JSONEncoder)
    built: list[tuple[Any, ...]] = []

    def counting(*args: Any) -> Any:
        built.append(args)
        return real(*args)

    monkeypatch.setattr(json.encoder, "c_make_encoder", counting)
    encode = events.json_encoder()
    for value in HOSTILE.values():
        encode(value)
    assert len(built) == 1  # once, when built; JSONEncoder.encode builds one per call
    assert built[0][0] is None  # no markers: no cycle check (see the docstring)
    assert encode_called == []


@pytest.mark.parametrize("name", list(HOSTILE))
def test_the_c_encoder_writes_what_json_dumps_writes(name: str) -> None:
    value = HOSTILE[name]
    text = events.json_encoder()(value)
    assert text == _reference(value)
    assert text.isascii()
    assert events.json_encoder(", ", ": ")(value) == json.dumps(value, default=str)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_the_fallback_writes_what_the_c_encoder_writes(
        name: str, monkeypatch: pytest.MonkeyPatch, encode_called: list[Any]) -> None:
    value = HOSTILE[name]
    fast = events.json_encoder()(value)
    _without_the_accelerator(monkeypatch)
    encode_called.clear()
    slow = events.json_encoder()(value)
    assert encode_called == [value]  # the fallback ran, in pure Python
    assert slow == fast
    assert slow.isascii()


def test_the_fallback_when_the_private_signature_changed(
        monkeypatch: pytest.MonkeyPatch, encode_called: list[Any]) -> None:
    """json's own calls (markers given: a dict) still work; the call events makes (no
    markers) is refused as a changed signature would be."""
    real = json.encoder.c_make_encoder
    if real is None:
        pytest.skip("no C accelerator here: nothing of it to change")

    def changed(markers: Any, *args: Any) -> Any:
        if markers is None:
            raise TypeError("Encoder() takes 10 arguments (9 given)")
        return real(markers, *args)

    monkeypatch.setattr(json.encoder, "c_make_encoder", changed)
    encode = events.json_encoder()
    for name, value in HOSTILE.items():
        expected = _reference(value)
        encode_called.clear()
        assert encode(value) == expected, name
        assert encode_called == [value], name


@pytest.mark.parametrize("fallback", [False, True], ids=["c", "fallback"])
def test_what_neither_encoder_writes(fallback: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys json cannot write are refused as json.dumps refuses them, a cycle raises
    (RecursionError without the cycle check, ValueError with it), and an int past
    Python's digit limit raises ValueError: in both paths, no partial text."""
    if fallback:
        _without_the_accelerator(monkeypatch)
    elif json.encoder.c_make_encoder is None:
        pytest.skip("no C accelerator here")
    encode: Callable[[Any], str] = events.json_encoder()
    assert isinstance(getattr(encode, "__self__", None), json.JSONEncoder) is fallback
    with pytest.raises(TypeError, match="keys must be str"):
        encode({("a", 1): 1})
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(ValueError if fallback else RecursionError):
        encode({"a": cycle})
    with pytest.raises(ValueError, match="digits"):
        encode([10**5000])
