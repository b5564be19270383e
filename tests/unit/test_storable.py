"""What PostgreSQL can store: the checks on results and the safe form of error text."""

from __future__ import annotations

from typing import Any

import pytest

from pgqueue import App
from pgqueue.exceptions import ConfigurationError
from pgqueue.utils import JSON_MAX_DEPTH, storable_json, storable_text
from pgqueue.worker.execution import describe_error, exception_payload


def _nested(levels: int, container: type = list) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value] if container is list else {"k": value}
    return value


@pytest.mark.parametrize("value", [
    "a\\u0000b",          # the text backslash-u0000 is not a NUL
    "\\\\\\u0000",
    "[" * 1000,           # brackets inside a string are not nesting
    {"[": "{" * 500},
    _nested(JSON_MAX_DEPTH),
    _nested(JSON_MAX_DEPTH, dict),
    "é" * 10, "😀",
])
def test_storable_values_pass(value: Any) -> None:
    assert storable_json(value, "v")


@pytest.mark.parametrize(("value", "reason"), [
    ("a\x00b", "NUL"),
    ({"k\x00": 1}, "NUL"),
    ([["\\\x00"]], "NUL"),         # a backslash, then a NUL
    ("\ud800", "lone surrogate"),
    ("\ud83d\ude00", "lone surrogate"),  # a surrogate pair as two code points
    ({"\udfff": 1}, "lone surrogate"),
    (_nested(JSON_MAX_DEPTH + 1), "nested deeper than 200"),
    (_nested(JSON_MAX_DEPTH + 1, dict), "nested deeper than 200"),
    (_nested(5000), "nested deeper than 200"),  # past Python's own recursion limit
])
def test_unstorable_values_are_refused_with_the_reason(value: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=f"^the value can't be stored: .*{reason}"):
        storable_json(value, "the value")


def test_not_json_is_a_type_error() -> None:
    for value in ({1, 2}, float("nan"), object()):
        with pytest.raises(TypeError, match="^v is not JSON-serializable"):
            storable_json(value, "v")


def test_the_size_limit_counts_utf8_bytes_of_the_json() -> None:
    assert storable_json("é" * 4, "v", max_bytes=10) == '"éééé"'  # 10 bytes
    with pytest.raises(ValueError, match="11 bytes as JSON, over the limit of 10 bytes "
                                         r"\(result_max_bytes\)"):
        storable_json("éééé!", "v", max_bytes=10, limit_name="result_max_bytes")
    assert storable_json("x" * 100, "v", max_bytes=0)


def test_storable_text_replaces_and_notes() -> None:
    assert storable_text("plain", 100) == "plain"
    assert storable_text("a\x00b\ud800c", 100) == (
        "a\ufffdb\ufffdc [pgqueue replaced 2 character(s) PostgreSQL cannot store (NUL, "
        "lone surrogates) with U+FFFD]")
    cut = storable_text("a" * 50 + "\x00" + "b" * 50, 20)
    assert cut == "a" * 10 + "\n[... 81 characters cut by pgqueue ...]\n" + "b" * 10
    storable_json(cut, "v")


def test_error_text_of_hostile_exceptions() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert describe_error(Unprintable()) == "Unprintable: <str() of the exception failed>"
    payload = exception_payload(ValueError("a\x00", {"k\x00": 1}, {1}, _nested(300)))
    storable_json(payload, "payload")
    assert payload["exc_message"][0].startswith("a\ufffd [pgqueue replaced")
    assert payload["exc_message"][1] == "{'k\\x00': 1}"  # as its repr
    assert payload["exc_message"][2] == "{1}"
    assert payload["exc_message"][3].startswith("[[[[")

    class Unrepresentable:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert exception_payload(ValueError(Unrepresentable()))["exc_message"] == [
        "<Unrepresentable object: repr() failed>"]


@pytest.mark.parametrize("value", [-1, 1.5, "10MB", True])
def test_result_max_bytes_refuses_what_is_not_a_byte_count(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="setting 'result_max_bytes' must be a whole "
                                                 "number of bytes, 0 for no limit"):
        App("t", result_max_bytes=value)


def test_result_max_bytes_none_means_no_limit() -> None:
    assert App("t", result_max_bytes=None).conf.result_max_bytes == 0
    assert App("t").conf.result_max_bytes == 10 * 1024 * 1024
