"""Small helpers: ids, imports, JSON, time."""

from __future__ import annotations

import decimal
import importlib
import json
import os
import random
import re
import secrets
import threading
import time
import uuid as _uuid
from datetime import datetime, timezone
from typing import Any

from pgqueue.exceptions import ConfigurationError

_uuid7_lock = threading.Lock()
_uuid7_last = (0, 0)  # (milliseconds, 74-bit tail) of the last id made here
# Ids need unique bits, not secret ones: a generator seeded from the OS saves a system
# call per id. A forked child reseeds and forgets the parent's last id, or parent and
# child would count on from the same tail within one millisecond.
_random = random.Random(secrets.randbits(128))
_pid = os.getpid()


def _after_fork_in_child() -> None:
    global _uuid7_last, _uuid7_lock, _pid
    _uuid7_lock = threading.Lock()
    _uuid7_last = (0, 0)
    _random.seed(secrets.randbits(128))
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork_in_child)


def current_pid() -> int:
    """``os.getpid()`` without its system call (kept up to date across forks)."""
    return _pid


def uuid7() -> _uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7): new rows land at the end of the index.

    Monotonic within a process (RFC 9562 method 1, a counter seeded at random each
    millisecond): ids made in one millisecond still sort in creation order, which is
    what keeps the jobs of one bulk insert first-in first-out.
    """
    return _uuid.UUID(int=_uuid7_int())


def _uuid7_int() -> int:
    global _uuid7_last
    ms = time.time_ns() // 1_000_000
    with _uuid7_lock:
        last_ms, last_tail = _uuid7_last
        if ms > last_ms:  # a new millisecond: a new random start
            tail = _random.getrandbits(73)
        else:  # same millisecond, or the clock stepped back: count on
            ms, tail = last_ms, last_tail + 1
            if tail >= 1 << 74:
                ms, tail = last_ms + 1, _random.getrandbits(73)
        _uuid7_last = (ms, tail)
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | (0x7 << 76) | (tail >> 62) << 64
    return value | (0b10 << 62) | (tail & 0x3FFF_FFFF_FFFF_FFFF)


def uuid() -> str:
    """A new task id as a string, like ``celery.utils.uuid`` (time-ordered, version 7)."""
    h = f"{_uuid7_int():032x}"  # formatted here: str(UUID(...)) costs more than the id
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuids(n: int) -> list[str]:
    """``n`` new task ids, as ``n`` calls of :func:`uuid` would make them (consecutive
    in one millisecond, so in creation order) at a quarter of the cost: a group of
    10,000 members takes its ids here."""
    global _uuid7_last
    if n < 1:
        return []
    ms = time.time_ns() // 1_000_000
    with _uuid7_lock:
        last_ms, last_tail = _uuid7_last
        if ms > last_ms:
            first = _random.getrandbits(73)
        else:
            ms, first = last_ms, last_tail + 1
        fits = first + n <= 1 << 74
        if fits:
            _uuid7_last = (ms, first + n - 1)
    if not fits:  # the counter runs out within this millisecond: one at a time
        return [uuid() for _ in range(n)]
    head = (ms & 0xFFFF_FFFF_FFFF) << 80 | (0x7 << 76)
    ids: list[str] = []
    tail, stop = first, first + n
    while tail < stop:  # in runs whose first 20 hex digits are the same: formatted once
        low = 0x8000_0000_0000_0000 | (tail & 0x3FFF_FFFF_FFFF_FFFF)
        last12 = low & 0xFFFF_FFFF_FFFF
        count = min(stop - tail, (1 << 48) - last12)
        h = f"{head | (tail >> 62) << 64:032x}"
        prefix = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{low >> 48:04x}-"
        ids += [f"{prefix}{x:012x}" for x in range(last12, last12 + count)]
        tail += count
    return ids


def import_object(path: str) -> Any:
    """Import ``pkg.module:attr``, ``pkg.module.attr`` or ``pkg.module``."""
    module_name, _, attr = path.partition(":")
    try:
        if attr:
            module = importlib.import_module(module_name)
        else:
            try:
                return importlib.import_module(module_name)
            except ModuleNotFoundError as e:
                if "." not in module_name or e.name != module_name:
                    raise
                module_name, _, attr = module_name.rpartition(".")
                module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise ConfigurationError(f"cannot import {path!r}: no module named {e.name!r}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigurationError(
                f"cannot import {path!r}: module {module.__name__!r} has no attribute {part!r}"
            ) from None
    return obj


# One encoder for every call: json.dumps builds a new one whenever it is given options,
# which cost more than encoding a small value.
_json_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False,
                                allow_nan=False).encode


def json_dumps(value: Any) -> str:
    """``value`` as JSON text for jsonb, floats written so that they come back floats.

    jsonb keeps a number as ``numeric``, which writes ``1e+20`` back as
    ``100000000000000000000``, an int to every JSON reader. A float whose shortest form
    has an exponent of 16 or more is written in full with ``.0``, which ``numeric``
    keeps. The sign of ``-0.0`` is lost all the same: ``numeric`` has no negative zero.
    """
    text = _json_encode(value)
    if "e+" not in text:  # no such float (a string holding "e+" costs a second pass)
        return text
    return _encode_floats_in_full(value)


def _float_in_full(number: float) -> str:
    text = repr(number)
    if "e+" not in text:
        return text
    digits = format(decimal.Decimal(text), "f")
    return digits if "." in digits else f"{digits}.0"


def _encode_floats_in_full(value: Any) -> str:
    """The JSON of a value the fast encoder wrote already (so: valid, no cycles), with
    :func:`_float_in_full` for every float."""
    if isinstance(value, float):
        return _float_in_full(value)
    if isinstance(value, dict):
        # A key as json writes it (a float key is a string already, as json makes it).
        return "{" + ",".join(f"{_json_encode({k: None})[1:-6]}:{_encode_floats_in_full(v)}"
                              for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_encode_floats_in_full(v) for v in value) + "]"
    return _json_encode(value)


def check_json(value: Any, what: str) -> None:
    """Raise a TypeError naming ``what`` when ``value`` is not plain JSON."""
    try:
        json_dumps(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} is not JSON-serializable ({e}); pass plain JSON values "
                        "(str, int, float, bool, None, list, dict with str keys)") from None


#: The deepest nesting of lists and objects pgqueue stores. Every stored value is read
#: back with Python's json module, which raises RecursionError near 1,000 levels (fewer
#: inside a deep call stack); Postgres itself refuses values nested ~10,000 deep.
JSON_MAX_DEPTH = 200

# A NUL serialised by json.dumps: "\u0000" after zero or more escaped backslashes ("\\").
# After an odd number of backslashes it is the text backslash-u0000, which Postgres stores.
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
# Characters PostgreSQL's text and jsonb cannot hold: NUL, and UTF-16 surrogates (a Python
# string may hold them, UTF-8 cannot encode them).
_UNSTORABLE_CHARS = re.compile("[\x00\ud800-\udfff]")


def storable_json(value: Any, what: str, max_bytes: int = 0, limit_name: str = "") -> str:
    """``value`` as JSON text that PostgreSQL's jsonb can hold.

    Raises TypeError naming ``what`` when it is not plain JSON, ValueError when it is
    but cannot be stored: a string or key with NUL or a lone surrogate, nesting deeper
    than :data:`JSON_MAX_DEPTH`, or (``max_bytes`` > 0) more than ``max_bytes`` of JSON.
    The checks cost a few scans of the text at C speed: a walk of the value happens only
    when the text holds more brackets than the depth limit.
    """
    try:
        text = json_dumps(value)
    except RecursionError:
        raise ValueError(f"{what} can't be stored: it is nested deeper than "
                         f"{JSON_MAX_DEPTH} levels") from None
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} is not JSON-serializable ({e}); use plain JSON values "
                        "(str, int, float, bool, None, list, dict with str keys)") from None
    reason = _unstorable_reason(value, text, max_bytes, limit_name)
    if reason:
        raise ValueError(f"{what} can't be stored: {reason}")
    return text


def _unstorable_reason(value: Any, text: str, max_bytes: int, limit_name: str) -> str | None:
    size = len(text)
    if not text.isascii():
        try:
            size = len(text.encode())
        except UnicodeEncodeError:
            return ("a string contains a lone surrogate (such as '\\ud800'), which is not "
                    "valid Unicode and cannot be encoded as UTF-8")
    if max_bytes and size > max_bytes:
        setting = f" ({limit_name})" if limit_name else ""
        return f"it is {size:,} bytes as JSON, over the limit of {max_bytes:,} bytes{setting}"
    if "\\u0000" in text and _JSON_NUL.search(text):
        return "a string or key contains NUL (\\u0000), which PostgreSQL cannot store"
    if text.count("[") + text.count("{") > JSON_MAX_DEPTH and _deeper_than(value,
                                                                          JSON_MAX_DEPTH):
        return f"it is nested deeper than {JSON_MAX_DEPTH} levels"
    return None


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and dicts nest more than ``limit`` levels (iterative: no recursion)."""
    containers = (list, tuple, dict)
    stack = [(value, 1)] if isinstance(value, containers) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, containers))
    return False


def storable_text(text: str, max_chars: int) -> str:
    """``text`` in a form PostgreSQL stores: NUL and surrogates replaced by U+FFFD, with a
    note saying so, and the middle cut out when it is longer than ``max_chars``."""
    if len(text) > max_chars:
        keep = max_chars // 2
        text = (f"{text[:keep]}\n[... {len(text) - 2 * keep:,} characters cut by pgqueue "
                f"...]\n{text[-keep:]}")
    if text.isascii() and "\x00" not in text:
        return text
    text, replaced = _UNSTORABLE_CHARS.subn("\ufffd", text)
    if replaced:
        text += (f" [pgqueue replaced {replaced} character(s) PostgreSQL cannot store (NUL, "
                 "lone surrogates) with U+FFFD]")
    return text


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def hostname() -> str:
    return os.uname().nodename
