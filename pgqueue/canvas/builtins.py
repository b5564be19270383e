"""The tasks a worker runs for canvas primitives that are one job: ``map``, ``starmap``
(and so ``chunks``), and ``celery.chain``/``celery.group``/``celery.chord``, which send
the workflow their keyword arguments describe (a periodic entry may be a workflow)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pgqueue.canvas.signatures import Signature, maybe_signature

if TYPE_CHECKING:
    from pgqueue.app import App
    from pgqueue.task import Task

#: The builtin tasks, by name.
NAMES = ("celery.map", "celery.starmap", "celery.chain", "celery.group", "celery.chord",
         "celery.chunks")


def _items(task_name: str, args: tuple[Any, ...], it: Any) -> list[Any]:
    if args:  # a step of a chain: the previous result is the list of items
        it = args[0]
    if not isinstance(it, list):
        raise TypeError(f"{task_name}: the items must be a list, not {type(it).__name__}")
    return it


def register(app: App) -> None:
    """Add the builtin tasks to ``app`` (once)."""
    if "celery.map" in app.tasks:
        return

    def xmap(*args: Any, task: Any, it: Any = None) -> list[Any]:
        fun = app.get_task(maybe_signature(task, app).task)
        return [fun(item) for item in _items("celery.map", args, it)]

    def xstarmap(*args: Any, task: Any, it: Any = None) -> list[Any]:
        fun = app.get_task(maybe_signature(task, app).task)
        return [fun(*item) for item in _items("celery.starmap", args, it)]

    def start(name: str) -> Any:
        def run(*args: Any, **kwargs: Any) -> str | None:
            sig = Signature.from_dict(
                {"task": name, "args": [], "kwargs": kwargs, "options": {},
                 "subtask_type": name.split(".")[1]}, app=app)
            result = sig.apply_async(args)
            return getattr(result, "id", None)
        return run

    app.task(name="celery.map")(xmap)
    app.task(name="celery.starmap")(xstarmap)
    for name in ("celery.chain", "celery.group", "celery.chord", "celery.chunks"):
        app.task(name=name)(start(name))


def builtin_task(app: App, name: str) -> Task | None:
    """The builtin task ``name`` of ``app``, registering the builtins on first use."""
    if name not in NAMES:
        return None
    register(app)
    return app.tasks.get(name)
