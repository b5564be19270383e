"""Signatures and the primitives built of them: chain, group, chord, chunks, xmap, xstarmap.

Each is a dict in Celery's form (``task``, ``args``, ``kwargs``, ``options``,
``subtask_type``, ``immutable``), so it stores as JSON as it is and :func:`signature`
rebuilds it from that JSON. Sending one goes through :mod:`pgqueue.client.workflow`,
which writes the whole workflow in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgqueue.app import App
    from pgqueue.result import AsyncResult


def _app(app: App | None) -> App:
    if app is not None:
        return app
    from pgqueue.app import current_app

    return current_app()


def _task_name(task: Any) -> str:
    if isinstance(task, str):
        return task
    name = getattr(task, "name", None)
    if isinstance(name, str) and name:
        return name
    raise TypeError(f"a signature needs a task or a task name, not {task!r}")


_dict_new = dict.__new__


class Signature(dict[str, Any]):
    """``task.s(1, 2)``: a task name with arguments and options, to send now, later, or
    as a step of a workflow. ``a.s() | b.s()`` is a :class:`chain`."""

    # _app in a slot: a group of 10,000 signatures makes no instance dict for it (a third
    # of what each costs); __dict__ and __weakref__ keep what a dict subclass allows.
    __slots__ = ("_app", "__dict__", "__weakref__")
    #: subtask_type -> class, for :meth:`from_dict`.
    TYPES: dict[str, type[Signature]] = {}
    _app: App | None

    def __init__(
        self,
        task: Any = None,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        app: App | None = None,
        subtask_type: str | None = None,
        immutable: bool = False,
        **more_options: Any,
    ) -> None:
        if isinstance(task, Mapping) and args is None and kwargs is None:
            source = task  # Signature(dict): a copy
            task, args, kwargs = source["task"], source.get("args"), source.get("kwargs")
            options = {**source.get("options", {}), **(options or {})}
            subtask_type = source.get("subtask_type")
            immutable = bool(source.get("immutable", False))
        if args is not None and not isinstance(args, (list, tuple)):
            raise TypeError(f"signature args must be a list or tuple, not "
                            f"{type(args).__name__}")
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise TypeError(f"signature kwargs must be a dict, not {type(kwargs).__name__}")
        super().__init__(
            task=_task_name(task), args=list(args or ()), kwargs=dict(kwargs or {}),
            options={**(options or {}), **more_options}, subtask_type=subtask_type,
            immutable=bool(immutable))
        self._app = app if app is not None else getattr(task, "app", None)

    @classmethod
    def quick(cls, task: str, args: tuple[Any, ...], kwargs: dict[str, Any], app: App | None,
              immutable: bool = False) -> Signature:
        """``task.s(*args, **kwargs)`` without the checks: a name, a tuple and a dict are
        what ``s()`` always has (a group of 10,000 builds 10,000 of them)."""
        sig = _dict_new(cls)  # item by item: no keyword dict to build and copy
        sig["task"] = task
        sig["args"] = list(args)
        sig["kwargs"] = kwargs
        sig["options"] = {}
        sig["subtask_type"] = None
        sig["immutable"] = immutable
        sig._app = app
        return sig

    # -- Celery's attributes --------------------------------------------------------------
    @property
    def task(self) -> str:
        return str(self["task"])

    name = task

    @property
    def args(self) -> list[Any]:
        return list(self["args"])

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self["kwargs"])

    @property
    def options(self) -> dict[str, Any]:
        return dict(self["options"])

    @property
    def subtask_type(self) -> str | None:
        value = self.get("subtask_type")
        return None if value is None else str(value)

    @property
    def immutable(self) -> bool:
        return bool(self.get("immutable", False))

    @property
    def id(self) -> str | None:
        value = self["options"].get("task_id")
        return None if value is None else str(value)

    @property
    def app(self) -> App:
        return _app(self._app)

    @property
    def type(self) -> Any:
        """The task object (the app must know it)."""
        return self.app.get_task(self.task)

    # -- building -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Mapping[str, Any], app: App | None = None) -> Signature:
        kind = d.get("subtask_type")
        if kind:
            if kind not in cls.TYPES:
                raise ValueError(f"unknown signature type {kind!r} (known: "
                                 f"{', '.join(sorted(cls.TYPES))})")
            return cls.TYPES[kind].from_dict(d, app)
        return Signature(d, app=app)

    def clone(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **options: Any) -> Signature:
        """A copy; ``args`` go before its own (unless immutable), ``kwargs`` and options
        are merged in."""
        try:
            copy = Signature.from_dict(_deep_copy(self), app=self._app)
        except RecursionError:
            raise ValueError("the workflow nests deeper than Python can copy: a signature "
                             "linked to itself, or nested in itself?") from None
        copy._merge(args, kwargs, options)
        return copy

    def _merge(self, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None,
               options: Mapping[str, Any]) -> None:
        if not self.immutable:
            if args:
                self["args"] = [*args, *self["args"]]
            if kwargs:
                self["kwargs"] = {**self["kwargs"], **kwargs}
        self["options"].update(options)

    partial = clone

    def set(self, immutable: bool | None = None, **options: Any) -> Signature:
        """Set options (``queue``, ``countdown``, ``task_id``, ...); returns itself."""
        if immutable is not None:
            self.set_immutable(immutable)
        self["options"].update(options)
        return self

    def set_immutable(self, immutable: bool) -> None:
        self["immutable"] = bool(immutable)

    def link(self, callback: Any) -> Any:
        """Run ``callback`` with this one's result when it succeeds; returns ``callback``."""
        callback = maybe_signature(callback, self._app)
        self["options"].setdefault("link", []).append(callback)
        return callback

    def link_error(self, errback: Any) -> Any:
        """Run ``errback(request, exc, traceback)`` when this one fails; returns it."""
        errback = maybe_signature(errback, self._app)
        self["options"].setdefault("link_error", []).append(errback)
        return errback

    def on_error(self, errback: Any) -> Signature:
        self.link_error(errback)
        return self

    def freeze(self, _id: str | None = None) -> AsyncResult:
        """Give it its job id now; returns the result it will have."""
        from pgqueue.result import AsyncResult
        from pgqueue.utils import uuid

        task_id = _id or self.id or uuid()
        self["options"]["task_id"] = task_id
        return AsyncResult(task_id, app=self.app, task_name=self.task)

    # -- sending --------------------------------------------------------------------------
    def apply_async(self, args: Sequence[Any] | None = None,
                    kwargs: Mapping[str, Any] | None = None, **options: Any) -> Any:
        """Send it: ``args`` go before its own (unless immutable)."""
        from pgqueue.client.workflow import send

        return send(self.app, self, args, kwargs, options)

    def delay(self, *args: Any, **kwargs: Any) -> Any:
        return self.apply_async(args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the task here and now, as Celery does."""
        sig = self.clone(args, kwargs)
        return self.type(*sig.args, **sig.kwargs)

    def apply(self, args: Sequence[Any] | None = None,
              kwargs: Mapping[str, Any] | None = None, **options: Any) -> Any:
        """Run it in this process (eagerly), its links too; returns its result."""
        from pgqueue.client.workflow import apply_eagerly

        return apply_eagerly(self.app, self.clone(args, kwargs, **options))

    # -- composing ------------------------------------------------------------------------
    def __or__(self, other: Any) -> Signature:  # type: ignore[override]
        if isinstance(other, Signature):
            if isinstance(self, group):
                return chord(self, body=other, app=self._app)
            mine = self.tasks if isinstance(self, chain) else [self]
            theirs = other.tasks if isinstance(other, chain) and not other.options \
                else [other]
            return chain(*mine, *theirs, app=self._app)
        return NotImplemented

    def __ror__(self, other: Any) -> Signature:  # type: ignore[override]
        if isinstance(other, Signature):
            return other.__or__(self)
        return NotImplemented

    def __ior__(self, other: Any) -> Signature:  # type: ignore[override]
        return self.__or__(other)

    def __deepcopy__(self, memo: Any) -> Signature:
        return Signature.from_dict(_deep_copy(self), app=self._app)

    def __reduce__(self) -> Any:
        return (_rebuild, (dict(self),))

    def __repr__(self) -> str:
        parts = [repr(a) for a in self["args"]] + [f"{k}={v!r}"
                                                   for k, v in self["kwargs"].items()]
        return f"{self.task}{'!' if self.immutable else ''}({', '.join(parts)})"


def _rebuild(d: dict[str, Any]) -> Signature:
    return Signature.from_dict(d)


def _deep_copy(value: Any) -> Any:
    """Dicts and lists copied all the way down (arguments and nested signatures)."""
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_deep_copy(v) for v in value]
    return value


def maybe_signature(value: Any, app: App | None = None) -> Signature:
    """A :class:`Signature` from a signature, its dict form, or a task."""
    if isinstance(value, Signature):
        return value
    if isinstance(value, Mapping):
        return Signature.from_dict(value, app=app)
    if hasattr(value, "s") and hasattr(value, "name"):
        return Signature(value.name, app=getattr(value, "app", app))
    raise TypeError(f"expected a signature such as task.s(...), not {value!r}")


def signature(varies: Any, *args: Any, **kwargs: Any) -> Signature:
    """``signature('tasks.add', args=(2, 2), countdown=10)``, ``signature(dict)``,
    ``signature(task)``: Celery's factory."""
    app = kwargs.pop("app", None)
    if isinstance(varies, Mapping) and not args and not kwargs:
        if isinstance(varies, Signature):
            return varies.clone()
        return Signature.from_dict(varies, app=app)
    return Signature(varies, *args, app=app, **kwargs)  # type: ignore[misc]


def _signatures(tasks: Iterable[Any], app: App | None) -> list[Signature]:
    return [t if isinstance(t, Signature) else maybe_signature(t, app) for t in tasks]


class _Composite(Signature):
    """A signature over others (a chain's steps, a group's members), in ``kwargs["tasks"]``:
    given one by one or as one iterable."""

    _kind = ""

    def __init__(self, *tasks: Any, app: App | None = None, **options: Any) -> None:
        if len(tasks) == 1 and not isinstance(tasks[0], Mapping) \
                and isinstance(tasks[0], Iterable):
            tasks = tuple(tasks[0])
        members = _signatures(tasks, app)
        if app is None:
            app = next((s._app for s in members if s._app is not None), None)
        super().__init__(f"celery.{self._kind}", (), {"tasks": members}, options, app=app,
                         subtask_type=self._kind)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], app: App | None = None) -> Signature:
        return cls(*d["kwargs"]["tasks"], app=app, **d.get("options", {}))

    @property
    def tasks(self) -> list[Signature]:
        return list(self["kwargs"]["tasks"])


class chain(_Composite):  # noqa: N801 - Celery's name
    """``chain(a.s(1), b.s(), c.s())``: each step gets the previous one's result as its
    first argument (a ``.si()`` step gets nothing). Its result is the last step's."""

    _kind = "chain"

    def _merge(self, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None,
               options: Mapping[str, Any]) -> None:
        steps = self["kwargs"]["tasks"]
        if steps and (args or kwargs):
            steps[0] = steps[0].clone(args, kwargs)
        self["options"].update(options)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``chain(...)()`` sends it, as in Celery."""
        return self.apply_async(args, kwargs)

    def __repr__(self) -> str:
        return " | ".join(repr(t) for t in self.tasks) or "chain()"


class group(_Composite):  # noqa: N801 - Celery's name
    """``group(a.s(1), a.s(2))``: run in parallel; the result is a GroupResult whose
    ``get()`` lists the values in this order."""

    _kind = "group"

    def _merge(self, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None,
               options: Mapping[str, Any]) -> None:
        if args or kwargs:
            self["kwargs"]["tasks"] = [t.clone(args, kwargs) for t in self.tasks]
        self["options"].update(options)

    def freeze(self, _id: str | None = None) -> Any:
        from pgqueue.utils import uuid

        self["options"]["group_id"] = _id or self["options"].get("group_id") or uuid()
        return self["options"]["group_id"]

    def __len__(self) -> int:
        return len(self["kwargs"]["tasks"])

    def __iter__(self) -> Any:
        return iter(self.tasks)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``group(...)()`` sends it, as in Celery."""
        return self.apply_async(args, kwargs)

    def __repr__(self) -> str:
        return f"group([{', '.join(repr(t) for t in self.tasks)}])"


class chord(Signature):  # noqa: N801 - Celery's name
    """``chord(header)(body)`` or ``chord(header, body)``: the body runs once, with the
    list of the header's results in header order, when the last member succeeds; a
    member that fails makes the body's result a :class:`~pgqueue.exceptions.ChordError`."""

    def __init__(self, header: Any, body: Any = None, app: App | None = None,
                 **options: Any) -> None:
        if isinstance(header, group):
            members = header.tasks
            options = {**header.options, **options}
        elif isinstance(header, Mapping):
            members = [maybe_signature(header, app)]
        else:
            members = _signatures(header, app)
        members = _signatures(members, app)
        if app is None:
            app = next((s._app for s in members if s._app is not None), None)
        body_sig = None if body is None else maybe_signature(body, app)
        super().__init__("celery.chord", (), {"header": members, "body": body_sig},
                         options, app=app, subtask_type="chord")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], app: App | None = None) -> Signature:
        kwargs = d["kwargs"]
        return cls(kwargs["header"], kwargs.get("body"), app=app, **d.get("options", {}))

    @property
    def tasks(self) -> list[Signature]:
        return list(self["kwargs"]["header"])

    header = tasks

    @property
    def body(self) -> Signature | None:
        body = self["kwargs"].get("body")
        return None if body is None else maybe_signature(body, self._app)

    def __call__(self, body: Any = None, **options: Any) -> Any:
        """``chord(header)(body)``: send with this body."""
        if body is None:
            raise TypeError("chord(header)(body): give the body to call the chord with")
        return chord(self.tasks, body, app=self._app, **self.options).apply_async(**options)

    def _merge(self, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None,
               options: Mapping[str, Any]) -> None:
        if args or kwargs:
            self["kwargs"]["header"] = [t.clone(args, kwargs) for t in self.tasks]
        self["options"].update(options)

    def link(self, callback: Any) -> Any:
        body = self.body
        if body is None:
            raise TypeError("a chord without a body has nothing to link to")
        result = body.link(callback)
        self["kwargs"]["body"] = body
        return result

    def link_error(self, errback: Any) -> Any:
        body = self.body
        if body is None:
            raise TypeError("a chord without a body has nothing to link to")
        result = body.link_error(errback)
        self["kwargs"]["body"] = body
        return result

    def __repr__(self) -> str:
        header = ", ".join(repr(t) for t in self.tasks)
        return f"chord([{header}], {self.body!r})"


def _check_items(it: Any, what: str) -> list[Any]:
    if isinstance(it, (str, bytes, Mapping)) or not isinstance(it, Iterable):
        raise TypeError(f"{what} takes an iterable of arguments, not {it!r}")
    return list(it)


class xmap(Signature):  # noqa: N801 - Celery's name
    """``task.map(items)``: one job that calls the task once per item, in the worker;
    its result is the list of return values."""

    builtin = "celery.map"

    def __init__(self, task: Any, it: Iterable[Any], app: App | None = None,
                 **options: Any) -> None:
        sig = maybe_signature(task, app)
        items = _check_items(it, f"{type(self).__name__}()")
        super().__init__(self.builtin, (), {"task": sig, "it": items}, options,
                         app=app or sig._app, subtask_type=type(self).__name__)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], app: App | None = None) -> Signature:
        kwargs = d["kwargs"]
        return cls(kwargs["task"], kwargs["it"], app=app, **d.get("options", {}))

    def __repr__(self) -> str:
        task = maybe_signature(self["kwargs"]["task"], self._app)
        return f"[{task.task}(x) for x in {self['kwargs']['it']!r}]"


class xstarmap(xmap):  # noqa: N801 - Celery's name
    """``task.starmap(items)``: like ``map``, each item being the arguments of a call."""

    builtin = "celery.starmap"


class chunks(Signature):  # noqa: N801 - Celery's name
    """``task.chunks(items, n)``: the items split in parts of ``n``, each part one job
    (a starmap); ``.group()`` gives the group of those jobs."""

    def __init__(self, task: Any, it: Iterable[Any], n: int, app: App | None = None,
                 **options: Any) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"chunks(): n must be a whole number of at least 1, not {n!r}")
        sig = maybe_signature(task, app)
        items = _check_items(it, "chunks()")
        super().__init__("celery.chunks", (), {"task": sig, "it": items, "n": n}, options,
                         app=app or sig._app, subtask_type="chunks")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], app: App | None = None) -> Signature:
        kwargs = d["kwargs"]
        return cls(kwargs["task"], kwargs["it"], kwargs["n"], app=app,
                   **d.get("options", {}))

    def group(self) -> group:
        kwargs = self["kwargs"]
        task = maybe_signature(kwargs["task"], self._app)
        items, n = list(kwargs["it"]), int(kwargs["n"])
        parts = [items[i:i + n] for i in range(0, len(items), n)]
        return group((xstarmap(task, part, app=self._app) for part in parts), app=self._app,
                     **self.options)

    def __repr__(self) -> str:
        return f"chunks({self['kwargs']['task']!r}, n={self['kwargs']['n']})"


Signature.TYPES.update(chain=chain, group=group, chord=chord, xmap=xmap, xstarmap=xstarmap,
                       chunks=chunks)
