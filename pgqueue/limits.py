"""What a producer accepts: the bounds of option values and of arguments.

Every value checked here ends up in a statement (a cast, an interval, a NOTIFY payload)
or in a claim. Refusing it at the door, with one line naming the option and its range,
is what keeps a single careless call from failing statements later, in a worker, for
every job that shares the queue (see docs/reliability.md, "Validated at the door").
"""

from __future__ import annotations

import difflib
import json
import re
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from pgqueue.utils import storable_json

#: Time limits and leases: at most a year (a claim that long is a stuck job, not a plan).
MAX_SECONDS = 365 * 24 * 3600
#: ``countdown`` and ``expires`` in seconds: at most a hundred years either way.
MAX_DELAY = 100 * 366 * 24 * 3600
#: Queue and task names, in characters: indexed, and sent as NOTIFY payloads (8000 bytes).
MAX_NAME = 200
#: ``unique_key``: indexed by a btree, whose entries stop at ~2700 bytes (4 per character).
MAX_UNIQUE_KEY = 500
#: ``max_retries`` is an ``integer`` column.
MAX_RETRIES = 2**31 - 1
#: Bounds of the argument settings (``task_max_args_bytes``, ``task_max_args_depth``):
#: jsonb stops at 255 MB; Python's JSON codecs recurse, ~1,000 levels at most.
MAX_ARGS_BYTES = 200 * 1024 * 1024
MAX_ARGS_DEPTH = 500
#: How deep a workflow may nest (chains in groups in chords, links of links), and how
#: many jobs one send may make: a deeper one is most likely a signature linked to itself.
MAX_CANVAS_DEPTH = 100
MAX_CANVAS_STEPS = 1_000_000
#: A ``task_id`` that is not a UUID, in characters: kept in ``task_id text`` columns with
#: a btree index each, whose entries stop at ~2700 bytes (4 per character).
MAX_TASK_ID = 500
#: The namespace of the row ids of task ids that are not UUIDs (``uuid5``). Fixed for ever:
#: changing it would lose every such job's rows.
TASK_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "pgqueue:task_id")
#: ``headers=``, as JSON: trace contexts and tenant ids, not payloads (use arguments).
MAX_HEADERS_BYTES = 64 * 1024

# Characters a name cannot hold: control characters (NUL breaks every statement) and
# lone surrogates (not encodable as UTF-8).
_BAD_NAME_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# Lone surrogates cannot be encoded as UTF-8.
_SURROGATE = re.compile("[\ud800-\udfff]")
# A task id that is a UUID: the canonical form (what pgqueue makes), or any case, with or
# without hyphens, in braces or not (what PostgreSQL's uuid input reads as well).
_CANONICAL_UUID = re.compile("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_UUID = re.compile(r"(\{)?[0-9a-fA-F]{8}(-?)[0-9a-fA-F]{4}\2[0-9a-fA-F]{4}\2[0-9a-fA-F]{4}"
                   r"\2[0-9a-fA-F]{12}(?(1)\})\Z")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_BRACES_AS_BRACKETS = bytes.maketrans(b"{}", b"[]")


def show(value: Any) -> str:
    """A short one-line repr for error messages (a 1 MB name is not echoed back)."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def seconds(what: str, value: Any, maximum: float = MAX_SECONDS) -> float:
    """A duration (``time_limit``, ``soft_time_limit``, ``lease``): ``0 < value <= max``."""
    if not _is_number(value) or not 0 < value <= maximum:
        raise ValueError(f"{what} must be a number of seconds above 0 and at most "
                         f"{maximum:,} ({maximum / 86400:g} days), got {show(value)}")
    return float(value)


def delay(what: str, value: Any) -> float:
    """``countdown`` (or ``expires`` in seconds): finite, at most ``MAX_DELAY`` either way."""
    if not _is_number(value) or not -MAX_DELAY <= value <= MAX_DELAY:
        raise ValueError(f"{what} must be a finite number of seconds from -{MAX_DELAY:,} to "
                         f"{MAX_DELAY:,} (100 years), got {show(value)}")
    return float(value)


def moment(what: str, value: datetime, convert: Callable[[datetime], datetime]) -> datetime:
    """``convert(value)``, with the overflow of a date at the ends of time named."""
    try:
        return convert(value)
    except (OverflowError, ValueError):
        raise ValueError(f"{what} {show(value)} is out of range: give a datetime between "
                         "years 1 and 9999 in UTC") from None


def priority(what: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 9:
        raise ValueError(f"{what} must be an integer from 0 to 9, got {show(value)}")
    return value


def max_retries(what: str, value: Any) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                              or not 0 <= value <= MAX_RETRIES):
        raise ValueError(f"{what} must be None (retry for ever) or an integer from 0 to "
                         f"{MAX_RETRIES:,}, got {show(value)}")
    return value


def name(what: str, value: Any, maximum: int = MAX_NAME) -> str:
    """A queue or task name (or ``unique_key``): 1 to ``maximum`` characters, no control
    characters."""
    if not isinstance(value, str) or not value or len(value) > maximum \
            or _BAD_NAME_CHARS.search(value):
        raise ValueError(f"{what} must be a string of 1 to {maximum} characters without "
                         f"control characters, got {show(value)}")
    return value


def job_id(what: str, value: Any) -> str:
    """A ``task_id`` or parent, root or group id: any string of 1 to ``MAX_TASK_ID``
    characters without NUL (Celery takes any string; see :func:`row_id`)."""
    if not isinstance(value, str) or not value or len(value) > MAX_TASK_ID \
            or "\x00" in value or _SURROGATE.search(value):
        raise ValueError(f"{what} must be a string of 1 to {MAX_TASK_ID} characters without "
                         f"NUL, got {show(value)}")
    return value


def row_id(task_id: str) -> str | None:
    """The ``uuid`` of the rows (jobs.id, results.id) of a task id; None for a string that
    cannot be a task id (:func:`job_id` refuses it), so no row has it.

    A UUID (8-4-4-4-12 hex digits, any case, or 32 digits, or in braces) is the row's id
    itself; any other string names the row ``uuid5(TASK_ID_NAMESPACE, task_id)``, and
    the string is kept beside it in the ``task_id`` column. Every path that takes an id
    (results, revoke, abort, update_state, parent ids, the CLI, the Django admin) comes
    through here, so they all find the same row.
    """
    if not isinstance(task_id, str):
        return None
    if len(task_id) == 36 and _CANONICAL_UUID.match(task_id):
        return task_id  # the common case: an id pgqueue made
    if not task_id or len(task_id) > MAX_TASK_ID \
            or "\x00" in task_id or _SURROGATE.search(task_id):
        return None
    if _UUID.match(task_id):
        return str(uuid.UUID(task_id))
    return str(uuid.uuid5(TASK_ID_NAMESPACE, task_id))


def given_id(task_id: str) -> str | None:
    """What the ``task_id`` column keeps for a (checked) task id: the string as given,
    or None when the row's id says it already (a UUID in its canonical form)."""
    if len(task_id) == 36 and _CANONICAL_UUID.match(task_id):
        return None
    return task_id


def expires(what: str, value: Any) -> Any:
    """Seconds, a timedelta or a datetime (its range is checked when it is converted)."""
    if isinstance(value, timedelta):
        delay(what, value.total_seconds())
    elif _is_number(value):
        delay(what, value)
    elif not isinstance(value, datetime):
        raise TypeError(f"{what} must be seconds, a timedelta or a datetime, not {show(value)}")
    return value


def eta(what: str, value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime, not {show(value)}")
    return value


# The names of JSON a serializer setting or accept_content may give.
_JSON = ("json", "application/json")


def serializer(what: str, value: Any) -> Any:
    """``serializer``, ``task_serializer``, ``result_serializer``: JSON only. Also
    ``accept_content`` (a list): the one message for pickle and every other format."""
    names = value if isinstance(value, (list, tuple, set, frozenset)) else [value]
    for one in names:
        if one not in _JSON:
            raise ValueError(f"{what}: {show(one)} is refused: pgqueue stores arguments and "
                             "results as JSON (jsonb), never pickle; use 'json' and pass "
                             "values JSON can hold (ids, not objects)")
    return value


def headers(what: str, value: Any) -> dict[str, Any]:
    """A JSON object with string keys that jsonb stores, of at most MAX_HEADERS_BYTES."""
    if not isinstance(value, dict):
        raise TypeError(f"{what} must be a dict, not {show(value)}")
    for key in value:
        if not isinstance(key, str):  # JSON would turn 1 into "1" without a word
            raise TypeError(f"{what}: keys must be strings, got {show(key)}")
    storable_json(value, what, MAX_HEADERS_BYTES, "the headers limit")
    return value


#: The largest concurrency limit (per queue or per key): far above any fleet.
MAX_CONCURRENCY = 1_000_000
#: The largest rate: starts per window (its window is 1 s, 1 min or 1 h).
MAX_RATE_COUNT = 1e9
_RATE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def rate(what: str, value: Any) -> tuple[float, float] | None:
    """Celery's rate limit, ``"N/s"``, ``"N/m"``, ``"N/h"`` or a number (per second), as
    (starts, window in seconds); None (or ``"none"``) for no limit. Zero is refused:
    Celery reads it as "no limit", which a typo should not silently mean."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        return None
    text = value.strip() if isinstance(value, str) else value
    unit = "s"
    if isinstance(text, str):
        count_text, _, unit = text.partition("/")
        unit = unit.strip() or "s"
        try:
            count = float(count_text)
        except ValueError:
            count = float("nan")
    elif _is_number(text):
        count = float(text)
    else:
        count = float("nan")
    if unit not in _RATE_UNITS or not 0 < count <= MAX_RATE_COUNT:
        raise ValueError(f"{what} must be a rate above 0 like '10/s', '100/m' or '500/h' "
                         f"(a number is per second; None for no limit), got {show(value)}")
    return count, _RATE_UNITS[unit]


def concurrency(what: str, value: Any) -> int:
    """A concurrency limit: how many jobs may run at once, 1 to :data:`MAX_CONCURRENCY`."""
    if not isinstance(value, int) or isinstance(value, bool) \
            or not 1 <= value <= MAX_CONCURRENCY:
        raise ValueError(f"{what} must be an integer from 1 to {MAX_CONCURRENCY:,}, "
                         f"got {show(value)}")
    return value


#: Checks of option values, by option name; each takes ``(what, value)``.
OPTION_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "time_limit": seconds,
    "soft_time_limit": seconds,
    "lease": seconds,
    "countdown": delay,
    "default_retry_delay": delay,
    "retry_backoff_max": delay,
    "expires": expires,
    "eta": eta,
    "priority": priority,
    "max_retries": max_retries,
    "queue": name,
    "routing_key": name,
    "name": name,
    "unique_key": lambda what, value: name(what, value, MAX_UNIQUE_KEY),
    "task_id": job_id,
    "parent_id": job_id,
    "root_id": job_id,
    "group_id": job_id,
    "serializer": serializer,
    "headers": headers,
    "rate_limit": rate,
    "concurrency_limit": concurrency,
    "concurrency_key": lambda what, value: name(what, value, MAX_UNIQUE_KEY),
}


def check_options(where: str, options: dict[str, Any]) -> None:
    """Check each option given (None means "not given") against :data:`OPTION_CHECKS`."""
    for key, value in options.items():
        check = OPTION_CHECKS.get(key)
        if check is not None and value is not None:
            check(f"{where}: {key}", value)


def text_depth_over(json_text: str, limit: int) -> bool:
    """Whether arrays and objects nest deeper than ``limit`` in ``json_text``, which
    ``json_dumps`` made: its brackets outside strings, then the innermost pairs removed,
    one level per pass. All in C: a tenth of the cost of walking the values in Python."""
    text = json_text.encode(errors="surrogatepass")
    if b"\\" in text:  # escapes, so that each remaining quote opens or closes a string
        text = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = b"".join(text.split(b'"')[::2]).translate(_BRACES_AS_BRACKETS, _NOT_BRACKETS)
    for _ in range(limit):
        if not brackets:
            return False
        brackets = brackets.replace(b"[]", b"")  # new neighbours wait for the next pass
    return bool(brackets)


def depth_over(value: Any, limit: int) -> bool:
    """Whether lists and dicts nest deeper than ``limit`` in ``value`` (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if level > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, (list, tuple, dict)):
                stack.append((child, level + 1))
    return False


def bad_text(value: Any) -> str | None:
    """The first string (key or value) in ``value`` that jsonb cannot store, if any."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item or _has_surrogate(item):
                return item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return None


def _has_surrogate(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def suspicious(json_text: str) -> bool:
    """Whether JSON text from ``json_dumps`` may hold a NUL (escaped: ``\\u0000``, or
    the text ``\\\\u0000``, a false alarm) or a lone surrogate."""
    return "\\u0000" in json_text or not json_text.isascii() \
        and _SURROGATE.search(json_text) is not None


def decode_job(args: str, kwargs: str, options: str
               ) -> tuple[list[Any], dict[str, Any], dict[str, Any], str | None]:
    """A claimed row's arguments and options, decoded from their JSON text, and why the
    job cannot run when they are not what a producer writes (a row written by plain SQL).
    Never raises: a fault fails that job alone, not the jobs claimed with it."""
    decoded: list[Any] = []
    for field, text in (("args", args), ("kwargs", kwargs), ("options", options)):
        try:
            decoded.append(json.loads(text))
        except RecursionError:
            return [], {}, {}, f"{field}: nested too deep to decode"
        except ValueError as error:  # e.g. an integer of more than 4,300 digits
            return [], {}, {}, f"{field} cannot be decoded ({error})"
    fault = _shape_fault(*decoded)
    if fault is not None:
        return [], {}, {}, fault
    return decoded[0], decoded[1], decoded[2], None


def decode_headers(text: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """A claimed row's headers, and why the job cannot run when they are not a JSON
    object (written by plain SQL). Never raises, like :func:`decode_job`."""
    if text is None:
        return None, None
    try:
        value = json.loads(text)
    except (RecursionError, ValueError):
        return None, "headers cannot be decoded"
    if not isinstance(value, dict):
        return None, f"headers must be a JSON object or NULL, got {show(value)}"
    return value, None


def _shape_fault(args: Any, kwargs: Any, options: Any) -> str | None:
    for field, value, kind, called in (("args", args, list, "array"),
                                       ("kwargs", kwargs, dict, "object"),
                                       ("options", options, dict, "object")):
        if not isinstance(value, kind):
            return f"{field} must be a JSON {called}, got {show(value)}"
    try:
        for key in ("time_limit", "soft_time_limit", "lease"):
            if options.get(key) is not None:
                seconds(f"options.{key}", options[key])
    except ValueError as error:
        return str(error)
    eta = options.get("eta")
    if eta is not None:
        try:
            datetime.fromisoformat(eta)
        except (TypeError, ValueError):
            return f"options.eta must be an ISO 8601 date and time, got {show(eta)}"
    return None


def did_you_mean(name: str, choices: Iterable[str], cutoff: float = 0.6) -> str:
    """``"; did you mean 'x'?"`` for the nearest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=cutoff)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_names(where: str, options: Iterable[str], known: Collection[str],
                refused: Mapping[str, str], *, kind: str = "option",
                refusal: str = "is not supported",
                refusal_error: type[Exception] = TypeError) -> None:
    """Each option name is known, or the error says why it is refused or what was meant."""
    for key in options:
        if key in refused:
            raise refusal_error(f"{where}: option {key!r} {refusal}: {refused[key]}")
        if key not in known:
            raise TypeError(f"{where}: unknown {kind} {key!r}{did_you_mean(key, known)}")
