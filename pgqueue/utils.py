"""Small helpers: ids, imports, JSON, time."""

from __future__ import annotations

import importlib
import json
import os
import random
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


def json_dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def check_json(value: Any, what: str) -> None:
    """Raise a TypeError naming ``what`` when ``value`` is not plain JSON."""
    try:
        json_dumps(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} is not JSON-serializable ({e}); pass plain JSON values "
                        "(str, int, float, bool, None, list, dict with str keys)") from None


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def hostname() -> str:
    return os.uname().nodename
