"""Hypothesis strategies of the fuzz test: producer calls, raw job rows, task plans.

Everything is drawn from families that ``PGQUEUE_FUZZ_ONLY`` can narrow (comma-separated,
e.g. ``raise,retry``), to find which kind of input a failure needs:

  args     odd argument values: NUL, lone surrogates, NaN, huge, deep, non-JSON, odd keys
  options  odd option values: NaN, inf, huge, negative, bool, wrong types, odd queues
  names    odd task names sent by name (unknown, empty, NUL, 1 MB)
  raw      rows inserted with plain SQL: bad JSON shapes, bad options, infinities
  return   tasks returning odd values
  raise    tasks raising odd exceptions, sys.exit(), KeyboardInterrupt, deep recursion
  retry    self.retry() with odd countdowns and etas
  progress update_state() with odd states and meta
  exit     os._exit() and SIGKILL of a pool child (processes pool only)

Plain inputs (JSON values a producer must accept, tasks that echo or return them) are
always in the mix: they are what every check can verify exactly
(``PGQUEUE_FUZZ_ONLY=plain`` leaves only them).
"""

from __future__ import annotations

import math
import os
import reprlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

FAMILIES = ("args", "options", "names", "raw", "return", "raise", "retry", "progress", "exit")


def enabled_families() -> frozenset[str]:
    chosen = os.environ.get("PGQUEUE_FUZZ_ONLY")
    if not chosen:
        return frozenset(FAMILIES)
    families = frozenset(f.strip() for f in chosen.split(",") if f.strip()) - {"plain"}
    unknown = families - set(FAMILIES)
    assert not unknown, f"PGQUEUE_FUZZ_ONLY: unknown {sorted(unknown)}; known: {FAMILIES}"
    return families


_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60
_short.maxlevel = 5
_short.maxlist = _short.maxdict = 4


class Deep:
    """A JSON array nested ``depth`` deep, built where it is used: Python's own encoder
    gives up near 1,000 levels, and the point is to see what pgqueue does beyond."""

    def __init__(self, depth: int) -> None:
        self.depth = depth

    def build(self) -> Any:
        value: Any = "leaf"
        for _ in range(self.depth):
            value = [value]
        return value

    def json(self) -> str:
        return "[" * self.depth + '"leaf"' + "]" * self.depth

    def __repr__(self) -> str:
        return f"Deep({self.depth})"


def _big(n: int) -> str:
    return "x" * n


# -- values ----------------------------------------------------------------------------
plain_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
                     max_size=12)
plain_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63),
    st.floats(allow_nan=False, allow_infinity=False), plain_text,
    st.sampled_from(["😀", "\u202eevil", "\uffff", "\U0010ffff", "é" * 50]),
)
#: JSON values any producer must accept and store unchanged.
plain_values = st.recursive(
    plain_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(plain_text, inner, max_size=3),
    max_leaves=8)

ODD_STRINGS = ["a\x00b", "\x00", "\ud800", "x\udfffy", "\udbff\x00", "\\u0000"]
#: Odd scalars that ``ascii()`` writes as Python source (how plans carry them).
odd_literal_scalars = st.one_of(
    st.sampled_from(ODD_STRINGS),
    st.text(max_size=6),  # any code point, surrogates and NUL included
    st.sampled_from([math.nan, math.inf, -math.inf, 10**40, b"\xff", {1, 2},
                     datetime(2024, 1, 1), timedelta(1), 1 + 2j]),
)
odd_keys = st.one_of(st.integers(-5, 5), st.none(), st.booleans(), st.floats(),
                     st.sampled_from(["\x00", "\ud800", (1, 2), ""]))


def _odd_values(scalars: st.SearchStrategy[Any], *more: st.SearchStrategy[Any]
                ) -> st.SearchStrategy[Any]:
    return st.one_of(
        scalars,
        # mostly above any sane size limit, once in a while far above
        st.sampled_from([300_000, 2**21, 2**21, 12 * 2**20]).map(_big),
        st.recursive(
            plain_scalars | scalars,
            lambda inner: st.lists(inner, max_size=3)
            | st.dictionaries(plain_text | odd_keys, inner, max_size=3),
            max_leaves=6),
        *more,
    )


#: Values a producer may refuse: unstorable, non-JSON, deep, big, odd keys.
odd_values = _odd_values(odd_literal_scalars | st.just(object()),
                         st.sampled_from([100, 990, 1500, 5000]).map(lambda d: Deep(d).build()))
#: The same, but shallow enough for ``ascii()`` and ``eval`` (deep returns have a recipe).
odd_literal_values = _odd_values(odd_literal_scalars)


def literal(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[str]:
    """``ascii()`` of a drawn value: how plans carry odd values (see fuzz_tasks.decode)."""
    return strategy.map(ascii)


# -- task plans ------------------------------------------------------------------------
EXCEPTIONS = ["plain", "str_raises", "repr_raises", "unpicklable", "non_json_args",
              "deep_args", "cycle", "base", "system_exit", "system_exit_code", "sys_exit",
              "keyboard_interrupt", "generator_exit", "recursion"]
MESSAGES = st.one_of(plain_text, st.sampled_from(ODD_STRINGS),
                     st.sampled_from([2**20]).map(_big))
COUNTDOWNS_SANE = [0, 0.05, 0.3]
COUNTDOWNS_ODD = [math.nan, math.inf, -math.inf, -1, 1e300, 1e13, 2**63, "soon", True, None,
                  [], 3600, datetime(9999, 12, 31, 23, 59), datetime(1, 1, 1),
                  datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))]


PLAIN_PLANS = st.one_of(
    st.just({"do": "echo"}),
    st.builds(lambda v: {"do": "return", "value": {"lit": v}}, literal(plain_values)),
    st.builds(lambda msg: {"do": "raise", "kind": "plain", "message": msg}, literal(plain_text)),
    st.builds(lambda times, when: {"do": "retry", "times": times, "when": when},
              st.integers(1, 2), literal(st.sampled_from(COUNTDOWNS_SANE))),
)


def odd_plans(family: str) -> st.SearchStrategy[dict[str, Any]]:
    """What a job of ``family`` does when it runs (fuzz_tasks.perform)."""
    if family == "return":
        return st.one_of(
            literal(odd_literal_values).map(lambda v: {"lit": v}),
            st.builds(lambda d, as_dict: {"deep": d, "as": "dict" if as_dict else "list"},
                      st.sampled_from([100, 990, 1500, 5000]), st.booleans()),
            st.sampled_from([2**20, 12 * 2**20]).map(lambda n: {"big": n}),
            st.sampled_from(["object", "set", "bytes", "tuple_key", "cycle", "generator"])
            .map(lambda m: {"make": m}),
        ).map(lambda recipe: {"do": "return", "value": recipe})
    if family == "raise":
        return st.builds(lambda kind, msg: {"do": "raise", "kind": kind, "message": msg},
                         st.sampled_from(EXCEPTIONS), literal(MESSAGES))
    if family == "retry":
        return st.builds(lambda times, when: {"do": "retry", "times": times, "when": when},
                         st.integers(1, 2), literal(st.sampled_from(COUNTDOWNS_ODD)))
    if family == "progress":
        return st.builds(lambda state, meta: {"do": "progress", "state": state, "meta": meta},
                         literal(st.sampled_from(["PROGRESS", "", "\x00", "\ud800",
                                                  "S" * 100_000, 5])),
                         literal(st.one_of(plain_values, odd_values)))
    assert family == "exit"
    return st.builds(lambda how: {"do": "exit", "how": how, "times": 1},
                     st.sampled_from(["os_exit", "sigkill"]))


PLAN_FAMILIES = ("return", "raise", "retry", "progress", "exit")


def plan_families(pool: str, families: frozenset[str]) -> list[str]:
    """The behaviour families to draw from; a child can only exit in the processes pool."""
    return [f for f in PLAN_FAMILIES if f in families and (f != "exit" or pool == "processes")]


# -- producer calls --------------------------------------------------------------------
#: Option values a producer must accept and that change nothing a check looks at.
SANE_OPTIONS: dict[str, list[Any]] = {
    "countdown": [0, 0.1], "priority": [0, 5, 9], "expires": [3600, timedelta(hours=1)],
    "time_limit": [30], "soft_time_limit": [20], "max_retries": [0, 3], "queue": ["default"],
    "ignore_result": [False, True], "lease": [60],
}
_NUMBERS_ODD = [0, -1, math.nan, math.inf, -math.inf, 1e13, 1e300, 2**63, True, "1", [1]]
ODD_OPTIONS: dict[str, list[Any]] = {
    "countdown": [*_NUMBERS_ODD, 3600],
    "eta": [datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59), datetime.max,
            datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),
            datetime(2020, 1, 1, tzinfo=timezone.utc), "2024-01-01", 0],
    "expires": [*_NUMBERS_ODD, datetime.min, datetime(9999, 12, 31), timedelta.max, "soon"],
    "priority": [-1, 10, True, 2**40, 1.5, "1", math.nan],
    "max_retries": [-1, 2**31, 2**40, True, 1.5, "3", math.nan],
    "time_limit": [*_NUMBERS_ODD, 1e-9, 0.01],
    "soft_time_limit": [*_NUMBERS_ODD, 1e-9],
    "lease": _NUMBERS_ODD,
    "queue": ["", "\x00", "q" * 9000, "\ud800", 5, "elsewhere", "ünï"],
    "task_id": ["not-a-uuid", "", 5, "\x00", "t" * 600, "ünï"],
    "unique_key": ["\x00", "k" * 10_000, 5],
    "max_retry": [1],
    "link": [None],
}
ODD_TASK_NAMES = ["fuzz.unknown", "", "\x00", "fuzz.\ud800", "t" * 2**20, "os.system"]


class _Shown:
    """Short reprs, so that a failing example prints in a screenful."""

    def __repr__(self) -> str:
        def show(value: Any) -> str:
            if isinstance(value, list) and value and isinstance(value[0], _Shown):
                return "[\n  " + ",\n  ".join(map(repr, value)) + "]"
            return _short.repr(value)

        fields = ", ".join(f"{k}={show(v)}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis' printer would show every field in full


@dataclass(repr=False)
class Call(_Shown):
    """One producer call: ``api`` is delay, apply_async, send_task or apply_many."""

    api: str
    task: str
    jobs: list[tuple[dict[str, Any], list[Any], dict[Any, Any]]]  # (plan, args, kwargs)
    options: dict[str, Any]
    #: The option drawn from ODD_OPTIONS, if any.
    odd_option: str | None = None


@dataclass(repr=False)
class RawRow(_Shown):
    """A job row written with plain SQL, past every check of the producer. JSON columns
    are JSON text; times are symbolic (``now``, ``past``, ``future``, ``infinity``...)."""

    task: str
    args: str
    kwargs: str
    options: str
    state: str
    attempt: int
    max_retries: int | None
    priority: int
    run_at: str
    expires_at: str | None
    created_at: str
    #: The columns drawn odd; the rest are a plain job's.
    odd: tuple[str, ...] = ()


@dataclass(repr=False)
class Batch(_Shown):
    raw: list[RawRow] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)


def calls(pool: str, families: frozenset[str]) -> st.SearchStrategy[Call]:
    """A producer call that is odd in at most one way (its *focus*): its arguments, one
    option, the task name, or what its jobs do."""
    sane_options = st.fixed_dictionaries(
        {}, optional={k: st.sampled_from(v) for k, v in SANE_OPTIONS.items()})
    behaviours = plan_families(pool, families)
    foci = ["plain", *(f for f in ("args", "options", "names") if f in families)]
    foci += ["plan"] if behaviours else []

    @st.composite
    def call(draw: st.DrawFn) -> Call:
        focus = draw(st.sampled_from(foci))
        options = draw(sane_options)
        odd_option = None
        if focus == "options":
            odd_option = draw(st.sampled_from(sorted(ODD_OPTIONS)))
            options[odd_option] = draw(st.sampled_from(ODD_OPTIONS[odd_option]))
        task = draw(st.sampled_from(["fuzz.act", "fuzz.act", "fuzz.act_async"]))
        if focus == "names":
            task = draw(st.sampled_from(ODD_TASK_NAMES))
        api = draw(st.sampled_from(["delay", "apply_async", "send_task", "apply_many"]))
        if not task.startswith("fuzz.act"):
            api = "send_task"  # only a known task has methods
        plan = odd_plans(draw(st.sampled_from(behaviours))) if focus == "plan" else PLAIN_PLANS
        value, keys = (odd_values, odd_keys) if focus == "args" else (plain_values, plain_text)
        job = st.tuples(plan, st.lists(st.one_of(plain_values, value), max_size=3),
                        st.dictionaries(st.one_of(plain_text, keys), st.one_of(plain_values, value),
                                        max_size=3))
        jobs = draw(st.lists(job, min_size=1, max_size=3 if api == "apply_many" else 1))
        if api == "delay" and (options or not all(isinstance(k, str) for k in jobs[0][2])):
            api = "apply_async"
        return Call(api, task, jobs, options, odd_option)

    return call()


# -- raw rows --------------------------------------------------------------------------
_raw_option_values = st.one_of(
    st.sampled_from(["abc", 1e300, -1, 0, None, True, [], {}, "2024-13-45", "nan", "Infinity",
                     "-infinity", 1e13, "9999-12-31T23:59:59+00:00", "0001-01-01", 10**30]),
    plain_values)
_raw_options = st.one_of(
    st.dictionaries(st.sampled_from(["lease", "time_limit", "soft_time_limit", "eta",
                                     "track_started", "surprise"]),
                    _raw_option_values, max_size=3),
    plain_values,
)


def _json(value: Any) -> str:
    import json

    if isinstance(value, Deep):
        return value.json()
    return json.dumps(value)


_RAW_ODD: dict[str, st.SearchStrategy[Any]] = {
    "task": st.sampled_from(["fuzz.unknown", "", "builtins.eval", "t" * 10_000]),
    "args": st.one_of(plain_values, st.sampled_from([100, 990, 1500, 5000]).map(Deep))
    .map(_json),
    "kwargs": st.one_of(plain_values, st.just(Deep(1500))).map(_json),
    "options": _raw_options.map(_json),
    "state": st.sampled_from(["scheduled", "retry", "started"]),
    "attempt": st.sampled_from([7, 2**31 - 1, -5]),
    "max_retries": st.sampled_from([0, -1, 2**31 - 1]),
    "run_at": st.sampled_from(["past", "-infinity", "infinity", "future"]),
    "expires_at": st.sampled_from(["past", "future", "infinity", "-infinity"]),
    "created_at": st.sampled_from(["-infinity", "infinity"]),
}


def raw_rows(pool: str, families: frozenset[str]) -> st.SearchStrategy[RawRow]:
    """A row of a plain job with one column (sometimes two) made odd."""

    @st.composite
    def row(draw: st.DrawFn) -> RawRow:
        plan = draw(PLAIN_PLANS)
        fields: dict[str, Any] = {
            "task": draw(st.sampled_from(["fuzz.act", "fuzz.act_async"])),
            "args": _json([plan, *draw(st.lists(plain_values, max_size=2))]), "kwargs": "{}",
            "options": "{}", "state": "queued", "attempt": 0, "max_retries": None,
            "priority": draw(st.integers(0, 9)), "run_at": "now", "expires_at": None,
            "created_at": "now"}
        odd = draw(st.lists(st.sampled_from(sorted(_RAW_ODD)), min_size=1, max_size=2,
                            unique=True))
        for column in odd:
            fields[column] = draw(_RAW_ODD[column])
        return RawRow(**fields, odd=tuple(odd))

    return row()


def batches(pool: str) -> st.SearchStrategy[Batch]:
    families = enabled_families()
    raw = st.lists(raw_rows(pool, families), max_size=2) if "raw" in families else st.just([])
    return st.builds(Batch, raw=raw, calls=st.lists(calls(pool, families), min_size=1,
                                                    max_size=5))
