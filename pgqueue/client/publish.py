"""Celery's publish signals, sent around the INSERT of a batch of jobs.

``before_task_publish`` and ``after_task_publish`` get, per job, what Celery's task
message would hold, as far as a row has it (protocol 2's names):

- ``sender``: the task name.
- ``headers``: ``lang``, ``task``, ``id``, ``shadow``, ``eta``, ``expires`` (ISO
  8601 text or None), ``group``, ``group_index`` (None), ``retries`` (0), ``timelimit``
  (``[hard, soft]``), ``root_id``, ``parent_id``, ``argsrepr``, ``kwargsrepr``,
  ``origin`` (``<pid>@<host>``), ``ignore_result``, and the ``headers=`` given to
  ``apply_async``. A receiver may add to it (a tracer injects its context there): the
  ``headers=`` given and what receivers add are stored in the job's ``headers`` column
  (``self.request.headers`` in the worker); the keys above are not, being the row's
  own columns, unless ``headers=`` gave them.
- ``body``: ``(args, kwargs, embed)``, with ``embed`` Celery's empty
  ``callbacks``/``errbacks``/``chain``/``chord``.
- ``exchange``: ``""``; ``routing_key``: the queue; ``properties``:
  ``correlation_id`` (the id), ``priority``; ``declare``: ``[]``; ``retry_policy``:
  the ``retry_policy`` given, or None (before_task_publish only, as in Celery).

A receiver that raises is logged and the job is sent all the same (Celery's
``Signal.send`` does the same). ``after_task_publish`` follows the INSERT: with
``connection=`` the job exists only once that transaction commits.
"""

from __future__ import annotations

import json
import os
import reprlib
from typing import Any

from pgqueue import limits, signals
from pgqueue.utils import hostname

_short = reprlib.Repr()
_short.maxstring = _short.maxother = 1024


def wanted(task_name: str) -> bool:
    return (signals.before_task_publish.has_receivers_for(task_name)
            or signals.after_task_publish.has_receivers_for(task_name))


def messages(task_name: str, shared: dict[str, Any], rows: list[dict[str, Any]],
             headers: Any) -> list[dict[str, Any]]:
    """The signal arguments of each job of a batch (``shared``: the batch's statement
    parameters, ``rows``: each job's id and arguments)."""
    options = json.loads(shared["options"]) if shared.get("options") else {}
    origin = f"{os.getpid()}@{hostname()}"
    found = []
    for row in rows:
        task_id = row.get("task_id") or row["id"]  # as given (producer.known_id)
        message_headers = {
            "lang": "py", "task": task_name, "id": task_id, "shadow": options.get("shadow"),
            "eta": options.get("eta"), "expires": shared.get("expires_at"),
            "group": shared.get("group_id"), "group_index": None, "retries": 0,
            "timelimit": [options.get("time_limit"), options.get("soft_time_limit")],
            "root_id": shared.get("root_id"), "parent_id": shared.get("parent_id"),
            "argsrepr": _short.repr(row["args"]), "kwargsrepr": _short.repr(row["kwargs"]),
            "origin": origin, "ignore_result": bool(shared.get("ignore_result")),
            **(headers if isinstance(headers, dict) else {}),
        }
        body = (row["args"], row["kwargs"],
                {"callbacks": None, "errbacks": None, "chain": None, "chord": None})
        found.append({"headers": message_headers, "body": body, "exchange": "",
                      "routing_key": shared.get("queue"),
                      "properties": {"correlation_id": task_id,
                                     "priority": shared.get("priority")}})
    return found


# The headers every message has, built from the row; not stored unless headers= gave them.
_PROTOCOL = frozenset({
    "lang", "task", "id", "shadow", "eta", "expires", "group", "group_index", "retries",
    "timelimit", "root_id", "parent_id", "argsrepr", "kwargsrepr", "origin", "ignore_result",
})


def stored_headers(task_name: str, message: dict[str, Any], given: Any
                   ) -> dict[str, Any] | None:
    """What the job's ``headers`` column keeps after ``before_task_publish``: the
    ``headers=`` given and what receivers added, checked as ``headers=`` is."""
    kept = {k: v for k, v in message["headers"].items()
            if k not in _PROTOCOL or isinstance(given, dict) and k in given}
    if not kept and given is None:
        return None
    return limits.headers(f"{task_name}: headers (with what before_task_publish added)",
                          kept)


def before(task_name: str, sent: list[dict[str, Any]], retry_policy: Any) -> None:
    for message in sent:
        signals.before_task_publish.send(sender=task_name, declare=[],
                                         retry_policy=retry_policy, **message)


def after(task_name: str, sent: list[dict[str, Any]]) -> None:
    for message in sent:
        signals.after_task_publish.send(
            sender=task_name, headers=message["headers"], body=message["body"],
            exchange=message["exchange"], routing_key=message["routing_key"])
