"""``task_annotations``: Celery's way to change task options from the configuration.

The setting is a dict keyed by task name (``'*'`` for every task), an object with an
``annotate(task)`` method returning a dict or None, a callable doing the same, a dotted
path to a class to instantiate, or a list of those. As in Celery, a task gets the options
of the first annotation that names it, then those of the first ``'*'``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pgqueue import celery_compat
from pgqueue.config import normalise_key
from pgqueue.exceptions import ConfigurationError
from pgqueue.task import check_task_options
from pgqueue.utils import import_object

if TYPE_CHECKING:
    from pgqueue.task import Task

#: Options fixed when the task is defined: an annotation cannot change them.
FIXED = frozenset({"name", "bind", "base", "shared"})
#: The task options pgqueue reads from the task at send or run time: those the registry
#: (pgqueue/celery_compat.py) accepts, but the fixed ones.
ANNOTATABLE = celery_compat.accepted(celery_compat.TASK_OPTIONS) - FIXED
# Accepted as Celery takes them, with the warning of the setting that means the same.
_IGNORED = {"acks_late": "task_acks_late", "reject_on_worker_lost": "task_reject_on_worker_lost"}
_MISSING = object()


def prepare_annotations(setting: Any) -> list[Any]:
    """The setting as a list of annotations; dicts are checked now, others when applied."""
    if setting is None:
        return []
    items = list(setting) if isinstance(setting, (list, tuple)) else [setting]
    prepared = []
    for item in items:
        if isinstance(item, str):  # Celery's dotted path to a class to instantiate
            found = import_object(item)
            item = found() if isinstance(found, type) else found
        if isinstance(item, Mapping):
            for name, options in item.items():
                check(options, f"task_annotations[{name!r}]")
            prepared.append(dict(item))
        elif callable(getattr(item, "annotate", None)) or callable(item):
            prepared.append(item)
        else:
            raise ConfigurationError(
                f"task_annotations: {item!r} is not a dict keyed by task name, an object "
                "with annotate(task), or a callable")
    return prepared


def check(annotation: Any, where: str) -> dict[str, Any]:
    """The options of one annotation, refused with one line when pgqueue can't honour them."""
    if not isinstance(annotation, Mapping):
        raise ConfigurationError(f"{where}: expected a dict of task options, got {annotation!r}")
    options: dict[str, Any] = dict(annotation)
    for key in options:
        if not isinstance(key, str):
            raise ConfigurationError(f"{where}: option names are strings, not {key!r}")
        if key.startswith(("@", "on_")) or key in ("after_return", "before_start", "run"):
            raise ConfigurationError(
                f"{where}: {key!r} changes a method; annotations carry task options only "
                "(override the method in a Task subclass given as base=)")
        if key not in ANNOTATABLE:
            try:
                check_task_options({key: None}, where)
            except TypeError as error:
                raise ConfigurationError(str(error)) from None
            raise ConfigurationError(f"{where}: {key!r} is fixed when the task is defined; "
                                     "pass it to @app.task instead")
    try:  # the options _IGNORED names warn as their setting, in annotate(): once, not twice
        check_task_options({k: v for k, v in options.items() if k not in _IGNORED}, where)
    except (TypeError, ValueError) as error:
        raise ConfigurationError(str(error)) from None
    for key in ("autoretry_for", "dont_autoretry_for"):
        if key in options:
            options[key] = _exception_classes(options[key], f"{where}: {key}")
    return options


def _exception_classes(value: Any, where: str) -> tuple[type[BaseException], ...]:
    classes = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    for cls in classes:
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise ConfigurationError(f"{where} must be exception classes, got {cls!r}")
    return classes


def _for_task(annotation: Any, task: Task) -> Any:
    if isinstance(annotation, dict):
        return annotation.get(task.name)
    method = getattr(annotation, "annotate", None)
    return method(task) if callable(method) else annotation(task)


def annotate(task: Task, annotations: list[Any]) -> None:
    """Give ``task`` the options its annotations carry, undoing those of earlier ones."""
    saved: dict[str, Any] = task.__dict__.pop("_annotated", {})
    for key, value in saved.items():
        if value is _MISSING:
            task.__dict__.pop(key, None)
        else:
            task.__dict__[key] = value
    first = next((found for a in annotations if (found := _for_task(a, task)) is not None),
                 None)
    anything = next((a["*"] for a in annotations if isinstance(a, dict) and "*" in a), None)
    checked = [check(options, f"task_annotations for {task.name}")
               for options in (first, anything) if options is not None]
    originals: dict[str, Any] = {}
    for options in checked:
        for key, value in options.items():
            if key in _IGNORED:
                normalise_key(_IGNORED[key])  # warns once, as the setting does
            originals.setdefault(key, task.__dict__.get(key, _MISSING))
            setattr(task, key, value)
    task.__dict__["_annotated"] = originals
