"""The tasks a worker runs for canvas primitives that are one job: ``map``, ``starmap``
(and so ``chunks``), and ``celery.chain``/``celery.group``/``celery.chord``, which send
the workflow their keyword arguments describe (a periodic entry may be a workflow)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pgqueue import db, limits
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
        def run(task: Task, *args: Any, **kwargs: Any) -> str | None:
            sig = Signature.from_dict(
                {"task": name, "args": [], "kwargs": kwargs, "options": {},
                 "subtask_type": name.split(".")[1]}, app=app)
            starter = task.request.id
            if starter is None or task.request.called_directly \
                    or app.conf.task_always_eager:
                return getattr(sig.apply_async(args), "id", None)
            return start_once(app, str(limits.row_id(starter)), sig, args)
        return run

    app.task(name="celery.map")(xmap)
    app.task(name="celery.starmap")(xstarmap)
    for name in ("celery.chain", "celery.group", "celery.chord", "celery.chunks"):
        app.task(name=name, bind=True)(start(name))


def start_once(app: App, starter: str, sig: Signature, args: tuple[Any, ...]) -> str | None:
    """Send ``sig`` for the starter job ``starter`` unless it did already: a starter run
    again after its worker died (rescued) returns the first send's result id instead of
    sending the workflow twice. The claim and the workflow commit together."""
    with app.connection("worker") as conn, conn.transaction():
        queries = app.queries
        row = db.run(conn, queries["canvas_start_claim"], {"starter": starter}).fetchone()
        claimed, sent = row if row is not None else (0, None)
        if not claimed:
            return str(sent) if sent is not None else None
        result_id = getattr(sig.apply_async(args, connection=conn), "id", None)
        db.run(conn, queries["canvas_start_done"], {"starter": starter,
                                                    "result_id": result_id})
        return None if result_id is None else str(result_id)


def builtin_task(app: App, name: str) -> Task | None:
    """The builtin task ``name`` of ``app``, registering the builtins on first use."""
    if name not in NAMES:
        return None
    register(app)
    return app.tasks.get(name)
