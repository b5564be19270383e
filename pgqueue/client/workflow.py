"""Sending a workflow: a canvas becomes job rows and waiting steps, in one transaction.

The steps that can run at once (the first of a chain, the members of a group, a chord's
header) are inserted into ``jobs`` as any job is. Every other step (a chain's next step,
a chord's body, a link or link_error callback) is a row of ``canvas_steps`` holding the
job it becomes, with one ``canvas_edges`` row per step it waits for. The database
releases it (see ``canvas_advance`` in sql/migrations/0006_canvas.sql) in the
transaction that records the last of those outcomes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg

from pgqueue import limits, tracing
from pgqueue.canvas.signatures import Signature, chain, chord, chunks, group, maybe_signature
from pgqueue.client.producer import JobBatch, JobBuilder, _execute_on, insert_jobs
from pgqueue.utils import check_json, json_dumps, uuid, uuids

if TYPE_CHECKING:
    from pgqueue.app import App

#: Options given to a whole workflow that only its first steps take (as in Celery).
_FIRST_ONLY = ("countdown", "eta")
#: Options that name one node: the whole workflow's result, not every step.
_NODE_ONLY = ("task_id", "group_id", "link", "link_error")


@dataclass(slots=True)
class _Entry:
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    id: str
    parent_id: str | None
    root_id: str
    group_id: str | None
    #: a task_id given that is not a UUID: kept in the row's task_id column
    given: str | None = None


@dataclass(slots=True)
class _Members:
    """Consecutive members of a flat group that are plain signatures of one task, as the
    rows ``apply_many`` would make of them (``{"id", "args", "kwargs"}``): a group of
    10,000 builds no per-member entry, and its rows go to the batch as they are."""

    task: str
    options: dict[str, Any]
    root_id: str
    group_id: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    #: every row's args is a list and its kwargs empty: nothing to check or convert
    plain: bool = True
    #: the rows are all of the group's members, their ids made in order by one uuids()
    whole: bool = False


@dataclass
class Plan:
    """What one send writes: jobs to insert now, steps that wait, groups to remember."""

    app: App
    entries: list[_Entry | _Members] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    groups: list[tuple[str, list[str]]] = field(default_factory=list)
    #: ids that some step waits for: their results are stored even if ignored.
    followed: set[str] = field(default_factory=set)
    root_id: str | None = None
    size: int = 0
    depth: int = 0

    # -- walking the canvas ---------------------------------------------------------------
    def add(self, sig: Signature, after: list[str], grouped: bool, inherited: dict[str, Any],
            group_id: str | None = None, header_id: str | None = None,
            level: int = 0) -> tuple[list[str], Any]:
        """Add ``sig`` waiting for ``after`` (a group's results when ``grouped``);
        returns the ids whose results follow it, and its result object."""
        if level > limits.MAX_CANVAS_DEPTH:
            raise ValueError(f"the workflow nests deeper than {limits.MAX_CANVAS_DEPTH} "
                             "levels (chains in groups in chords ...); flatten it")
        sig = maybe_signature(sig, self.app)
        kind = sig.subtask_type
        if kind == "chain":
            return self._chain(sig, after, grouped, inherited, group_id, header_id, level)
        if kind == "group":
            return self._group(sig, after, grouped, inherited, group_id, header_id, level)
        if kind == "chord":
            return self._chord(sig, after, grouped, inherited, group_id, header_id, level)
        if kind == "chunks":
            assert isinstance(sig, chunks)
            return self._group(sig.group(), after, grouped, inherited, group_id, header_id,
                               level)
        return self._task(sig, after, grouped, inherited, group_id, header_id, level)

    def _options(self, sig: Signature, inherited: dict[str, Any]) -> dict[str, Any]:
        return {**inherited, **sig.options}

    def _chain(self, sig: Signature, after: list[str], grouped: bool,
               inherited: dict[str, Any], group_id: str | None, header_id: str | None,
               level: int) -> tuple[list[str], Any]:
        assert isinstance(sig, chain)
        steps = sig.tasks
        if not steps:
            raise ValueError("an empty chain has nothing to run")
        options = self._options(sig, inherited)
        links = _as_list(options.pop("link", None))
        errbacks = _as_list(options.pop("link_error", None))
        task_id = options.pop("task_id", None)
        first_only = {k: options.pop(k) for k in _FIRST_ONLY if k in options}
        previous: Any = None
        exits, result = after, None
        for i, step in enumerate(steps):
            step = maybe_signature(step, self.app)
            if errbacks:  # Celery: a chain's errback is every step's
                step = step.clone()
                for errback in errbacks:
                    step.link_error(errback)
            if i == len(steps) - 1 and (links or task_id):
                step = step.clone()
                for link in links:
                    step.link(link)
                if task_id:
                    _set_id(step, task_id)
            step_options = {**options, **(first_only if i == 0 else {})}
            if i > 0 and not exits:
                raise ValueError("an empty group inside a chain has no result to pass on; "
                                 "remove it")
            exits, result = self.add(step, exits, grouped if i == 0 else bool(
                getattr(result, "is_group", False)), step_options, group_id,
                header_id if i == 0 else _group_of(result), level + 1)
            if previous is not None and getattr(result, "_parent", None) is None:
                result._parent = previous
            previous = result
        return exits, result

    def _group(self, sig: Signature, after: list[str], grouped: bool,
               inherited: dict[str, Any], group_id: str | None, header_id: str | None,
               level: int) -> tuple[list[str], Any]:
        from pgqueue.result import AsyncResult, GroupResult

        assert isinstance(sig, group)
        options = self._options(sig, inherited)
        given_gid = options.pop("group_id", None)
        gid = str(limits.row_id(limits.job_id("group_id", given_gid))) if given_gid \
            else uuid()
        links = _as_list(options.pop("link", None))
        errbacks = _as_list(options.pop("link_error", None))
        options.pop("task_id", None)
        members = sig.tasks
        if not members and after:
            raise ValueError("an empty group inside a chain has no result to pass on; "
                             "remove it")
        exits: list[str] = []
        results: list[Any] = []
        plain = not (after or grouped or links or errbacks)
        shared = dict(options)
        app = self.app
        run: _Members | None = None
        fresh = iter(uuids(len(members)) if plain else ())
        counted = 0  # plain members not yet in self.size
        for member in members:
            if not isinstance(member, Signature):
                member = maybe_signature(member, app)
            if plain and member.get("subtask_type") is None and not member["options"]:
                # the common flat group: a row each, as apply_many would make them
                counted += 1
                task, args, kwargs = member["task"], member["args"], member["kwargs"]
                job_id = next(fresh)
                if run is None or run.task != task:
                    run = self._members(task, shared, gid, job_id)
                    add_row = run.rows.append
                add_row({"id": job_id, "args": args, "kwargs": kwargs})
                if kwargs or type(args) is not list:
                    run.plain = False
                exits.append(job_id)
                results.append(AsyncResult(job_id, app, task))
                continue
            run = None
            self._count(counted)
            counted = 0
            if links or errbacks:
                member = member.clone()
                for link in links:
                    member.link(link)
                for errback in errbacks:
                    member.link_error(errback)
            member_exits, result = self.add(member, after, grouped, options, gid, header_id,
                                            level + 1)
            exits += member_exits
            results += result.results if getattr(result, "is_group", False) else [result]
        self._count(counted)
        if run is not None and len(run.rows) == len(exits):
            run.whole = True
        self.groups.append((gid, exits))
        return exits, GroupResult(gid, results, app=self.app)

    def _count(self, steps: int) -> None:
        self.size += steps
        if self.size > limits.MAX_CANVAS_STEPS:
            raise ValueError(f"the workflow has more than {limits.MAX_CANVAS_STEPS:,} "
                             "steps; send it in parts")

    def _members(self, task: str, options: dict[str, Any], gid: str, first: str) -> _Members:
        """A new run of plain members; ``first``, its first row's id, is the workflow's
        root when it has none yet."""
        root = self.root_id = self.root_id or first
        run = _Members(task, options, root, gid)
        self.entries.append(run)
        return run

    def _chord(self, sig: Signature, after: list[str], grouped: bool,
               inherited: dict[str, Any], group_id: str | None, header_id: str | None,
               level: int) -> tuple[list[str], Any]:
        assert isinstance(sig, chord)
        body = sig.body
        if body is None:
            raise ValueError("a chord needs a body: chord(header)(body) or "
                             "chord(header, body)")
        options = self._options(sig, inherited)
        task_id = options.pop("task_id", None)
        links = _as_list(options.pop("link", None))
        errbacks = _as_list(options.pop("link_error", None))
        first_only = {k: options.pop(k) for k in _FIRST_ONLY if k in options}
        header = group(sig.tasks, app=self.app)
        if "group_id" in options:
            header.set(group_id=options.pop("group_id"))
        exits, header_result = self.add(header, after, grouped, {**options, **first_only},
                                        group_id, header_id, level + 1)
        body = body.clone()
        for link in links:
            body.link(link)
        for errback in errbacks:
            body.link_error(errback)
        if task_id:
            _set_id(body, task_id)
        body_exits, result = self.add(body, exits, True, options, group_id,
                                      header_result.id, level + 1)
        if getattr(result, "_parent", None) is None:
            result._parent = header_result
        return body_exits, result

    def _task(self, sig: Signature, after: list[str], grouped: bool,
              inherited: dict[str, Any], group_id: str | None, header_id: str | None,
              level: int) -> tuple[list[str], Any]:
        from pgqueue.result import AsyncResult

        self.size += 1
        if self.size > limits.MAX_CANVAS_STEPS:
            raise ValueError(f"the workflow has more than {limits.MAX_CANVAS_STEPS:,} "
                             "steps; send it in parts")
        options = {**inherited, **sig["options"]} if sig["options"] else dict(inherited)
        links = [maybe_signature(s, self.app) for s in _as_list(options.pop("link", None))] \
            if "link" in options else []
        errbacks = [maybe_signature(s, self.app)
                    for s in _as_list(options.pop("link_error", None))] \
            if "link_error" in options else []
        given = options.pop("task_id", None)
        if given is None:
            job_id, shown = uuid(), None
        else:
            shown = limits.job_id(f"{sig.task}: task_id", given)
            job_id = str(limits.row_id(shown))
        root = self.root_id = self.root_id or job_id
        parent = header_id if grouped else (after[0] if after else options.get("parent_id"))
        if "parent_id" in options or "root_id" in options:
            options.pop("parent_id", None)
            options.pop("root_id", None)
        args, kwargs = sig["args"], sig["kwargs"]
        given_id = limits.given_id(shown) if shown is not None else None
        if not after and not grouped:
            self.entries.append(_Entry(sig.task, args, kwargs, options, job_id, parent, root,
                                       group_id, given_id))
        elif not after:  # after an empty group: runs at once with its empty list
            if not sig.immutable:
                args = [[], *args]
            self.entries.append(_Entry(sig.task, args, kwargs, options, job_id, parent, root,
                                       group_id, given_id))
        else:
            passing = "none" if sig.immutable else ("list" if grouped else "one")
            self._wait(sig.task, args, kwargs, options, job_id, after, "success", passing,
                       parent, group_id)
        for link in links:
            self.add(link, [job_id], False, {}, None, None, level + 1)
        for errback in errbacks:
            if errback.subtask_type is not None:
                raise ValueError(f"{sig.task}: link_error takes a task signature, not a "
                                 f"{errback.subtask_type}; make the errback send it")
            self._wait(errback.task, errback.args, errback.kwargs,
                       {**errback.options, "errback": True},
                       str(limits.row_id(errback.id) if errback.id else uuid()),
                       [job_id], "failure", "error", job_id, None)
        return [job_id], AsyncResult(shown or job_id, app=self.app, task_name=sig.task)

    def _wait(self, task: str, args: list[Any], kwargs: dict[str, Any],
              options: dict[str, Any], job_id: str, after: list[str], runs_on: str,
              passing: str, parent: str | None, group_id: str | None) -> None:
        if options.get("unique_key") is not None:
            raise ValueError(f"{task}: unique_key is refused on a step that waits for "
                             "others (its job is made later); give it to the first step")
        if options.get("connection") is not None:
            raise ValueError(f"{task}: connection= belongs to the whole workflow's "
                             "apply_async, not to one step")
        self.followed.update(after)
        options = dict(options)
        countdown = options.pop("countdown", None)
        expires = options.pop("expires", None)
        errback = options.pop("errback", False)
        for option in ("link", "link_error"):
            options.pop(option, None)
        builder = JobBuilder(self.app, task, self.app.tasks.get(task), options)
        row = builder.row(args, kwargs)
        what = f"{task} (a step of the workflow)"
        check_json(row["args"], f"{what}: args")
        check_json(row["kwargs"], f"{what}: kwargs")
        job_options = dict(builder.job_options)
        if errback:
            job_options["errback"] = True
        if countdown is not None:
            countdown = limits.delay(f"{task}: countdown", countdown)
        expires_in = None
        expires_at = builder.expires_at
        if expires is None:
            expires = getattr(self.app.tasks.get(task), "expires", None)
        if isinstance(expires, (int, float, timedelta)) and not isinstance(expires, bool):
            seconds = expires.total_seconds() if isinstance(expires, timedelta) else expires
            expires_in, expires_at = limits.delay(f"{task}: expires", seconds), None
        elif isinstance(expires, datetime):
            expires_at = JobBuilder(self.app, task, None, {"expires": expires}).expires_at
        job = {
            "queue": builder.queue, "args": row["args"], "kwargs": row["kwargs"],
            "priority": builder.priority,
            "eta": builder.run_at.isoformat() if builder.run_at else None,
            "countdown": countdown,
            "expires_at": expires_at.isoformat() if expires_at else None,
            "expires_in": expires_in, "max_retries": builder.max_retries,
            "ignore_result": builder.ignore_result, "options": job_options,
            "headers": options.get("headers"),
        }
        self.steps.append({"id": job_id, "task": task, "root_id": self.root_id,
                           "parent_id": parent, "group_id": group_id, "job": job,
                           "after": list(after), "runs_on": runs_on, "pass": passing})

    # -- writing --------------------------------------------------------------------------
    def batches(self, connection: Any) -> list[JobBatch]:
        """The jobs to insert now, one batch per task and shared options; the waiting
        steps and the groups ride in the last batch's statement when it can carry them
        (``canvas_send``), else :meth:`parts` is a statement of its own."""
        for step in self.steps:
            if step["id"] in self.followed:
                step["job"]["options"]["followed"] = True
        tracing.inject_steps(self.steps)
        buckets: dict[tuple[Any, ...], _Bucket] = {}
        keys: dict[int, str] = {}  # options dicts shared by many entries: one key each
        followed = self.followed
        last: _Entry | None = None
        bucket: _Bucket | None = None

        def bucket_of(head: _Entry | _Members, parent: str | None, is_followed: bool
                      ) -> _Bucket:
            opts = keys.get(id(head.options))
            if opts is None:
                opts = keys[id(head.options)] = \
                    json_dumps(_plain(head.options)) if head.options else ""
            key = (head.task, parent, head.root_id, head.group_id, is_followed, opts)
            found = buckets.get(key)
            if found is None:
                found = buckets[key] = _Bucket(head, parent, is_followed)
            return found

        for entry in self.entries:
            if isinstance(entry, _Members):
                last = None
                for rows, is_followed in _by_followed(entry.rows, followed):
                    bucket_of(entry, None, is_followed).items.append((entry, rows))
                continue
            if bucket is not None and last is not None and entry.options is last.options \
                    and entry.task == last.task and entry.group_id == last.group_id \
                    and entry.parent_id == last.parent_id and entry.root_id == last.root_id \
                    and (entry.id in followed) == (last.id in followed):
                bucket.items.append(entry)  # a run of a group's members: the same key
                continue
            bucket = bucket_of(entry, entry.parent_id, entry.id in followed)
            bucket.items.append(entry)
            last = entry
        batches = [self._batch(b, connection) for b in buckets.values()]
        if batches and not batches[-1].keyed:
            batches[-1].statement = "canvas_send"
            batches[-1].extra = self.parts(batches[-1].rows)
        return batches

    def _batch(self, bucket: _Bucket, connection: Any) -> JobBatch:
        """The JobBatch of one bucket: its rows, each with the id the plan gave it and
        its arguments checked as ``JobBuilder.row()`` checks them."""
        head = bucket.head
        options = {**head.options, "parent_id": bucket.parent_id, "root_id": head.root_id,
                   "group_id": head.group_id}
        options.pop("connection", None)
        builder = JobBuilder(self.app, head.task, self.app.tasks.get(head.task), options)
        items = bucket.items
        for item in items:
            if isinstance(item, tuple) and not item[0].plain:
                member_rows = item[1]  # checked in place: the list stays the run's
                for i, r in enumerate(member_rows):
                    member_rows[i] = _row(builder, r["id"], r["args"], r["kwargs"], None)
        if len(items) == 1 and isinstance(items[0], tuple):
            rows = items[0][1]  # a flat group of one task: its rows as they were made
        else:
            rows = []
            for item in items:
                if isinstance(item, tuple):
                    rows += item[1]
                elif type(item.args) is list and not item.kwargs and not item.given:
                    rows.append({"id": item.id, "args": item.args, "kwargs": item.kwargs})
                else:
                    rows.append(_row(builder, item.id, item.args, item.kwargs, item.given))
        batch = JobBatch(head.task, builder.shared(), rows, connection,
                         builder.max_bytes, builder.max_depth, options.get("headers"),
                         options.get("retry_policy"), builder.on_duplicate)
        if bucket.followed:
            shared = dict(batch.shared)
            shared["options"] = json_dumps({**json.loads(shared["options"]),
                                            "followed": True})
            batch.shared = shared
        return batch

    def parts(self, rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The parameters of the waiting steps and the groups (``_canvas_parts`` in
        queries.py): the groups as array literals, every group's members in one (a uuid[]
        parses in a fraction of what the same ids cost as JSON strings), with where each
        one starts and ends. A group whose members are exactly ``rows``, the jobs of the
        statement that carries the parts, in id order, is ``rows_group``: the statement
        reads its members from the rows it inserts."""
        rows_group = None
        if rows is not None:
            rows_group = next((e.group_id for e in self.entries
                               if isinstance(e, _Members) and e.whole and e.rows is rows),
                              None)
        members: list[str] = []
        ids, firsts, lasts = [], [], []
        for gid, exits in self.groups:
            if gid == rows_group:
                continue
            ids.append(gid)
            firsts.append(str(len(members) + 1))
            members += exits
            lasts.append(str(len(members)))
        parts: dict[str, Any] = {
            "steps": json_dumps(self.steps) if self.steps else "[]",
            "group_ids": "{" + ",".join(ids) + "}",
            "group_members": "{" + ",".join(members) + "}",
            "group_firsts": "{" + ",".join(firsts) + "}",
            "group_lasts": "{" + ",".join(lasts) + "}"}
        if rows is not None:
            parts["rows_group"] = rows_group
        return parts

    def write(self, connection: Any, batches: list[JobBatch] | None = None) -> None:
        """Insert everything on ``connection``, inside the caller's transaction (or
        alone when :func:`_one_statement` says so)."""
        if batches is None:
            batches = self.batches(connection)
        for batch in batches:
            insert_jobs(self.app, batch)
        if (self.steps or self.groups) and not _carried(batches):
            _execute_on(connection, self.app.queries["canvas_parts_insert"], self.parts(),
                        _NoBatch)


def _carried(batches: list[JobBatch]) -> bool:
    """Whether the steps and groups ride in the last batch's statement."""
    return bool(batches) and batches[-1].statement == "canvas_send"


def _one_statement(batches: list[JobBatch]) -> bool:
    """A plan written by one statement, atomic alone: no BEGIN, no COMMIT (a batch with
    a unique_key is never ``canvas_send``: :meth:`Plan.batches` looked already)."""
    return len(batches) == 1 and _carried(batches)


def _row(builder: JobBuilder, row_id: str, args: Any, kwargs: Any,
         given: str | None) -> dict[str, Any]:
    """``builder.row()`` under the id the plan gave the job (and its task id as given)."""
    builder.row_id, builder.given_id = row_id, given
    try:
        return builder.row(args, kwargs)
    finally:
        builder.row_id = builder.given_id = None


def _by_followed(rows: list[dict[str, Any]], followed: set[str]
                 ) -> list[tuple[list[dict[str, Any]], bool]]:
    """``rows`` split into those no step waits for and those one does (whose results
    are kept): a flat group's members are all one or all the other."""
    if not followed:
        return [(rows, False)]
    mine = [row for row in rows if row["id"] in followed]
    if len(mine) == len(rows):
        return [(rows, True)]
    if not mine:
        return [(rows, False)]
    return [(mine, True), ([row for row in rows if row["id"] not in followed], False)]


@dataclass(slots=True)
class _Bucket:
    """The jobs of one batch: the entry or members whose options they share, and what
    goes in it (entries, and runs of members with their rows)."""

    head: _Entry | _Members
    parent_id: str | None
    followed: bool
    items: list[Any] = field(default_factory=list)


class _NoBatchType:
    ids: list[str] = []


_NoBatch: Any = _NoBatchType()


def _as_list(value: Any) -> list[Any]:
    """``link=`` and ``link_error=``: one signature or a list of them."""
    if value is None:
        return []
    if isinstance(value, Mapping) or not isinstance(value, (list, tuple)):
        return [value]
    return list(value)


def _plain(options: Mapping[str, Any]) -> Any:
    """Options as a JSON-able key (a datetime or timedelta as its text)."""
    return {k: v if isinstance(v, (str, int, float, bool, type(None))) else repr(v)
            for k, v in sorted(options.items())}


def _set_id(sig: Signature, task_id: str) -> None:
    if sig.subtask_type in ("chain",):
        steps = sig["kwargs"]["tasks"]
        steps[-1] = maybe_signature(steps[-1]).clone()
        _set_id(steps[-1], task_id)
    elif sig.subtask_type == "chord":
        body = sig["kwargs"]["body"] = maybe_signature(sig["kwargs"]["body"]).clone()
        _set_id(body, task_id)
    elif sig.subtask_type == "group":
        sig["options"]["group_id"] = task_id
    else:
        sig["options"]["task_id"] = task_id


def _group_of(result: Any) -> str | None:
    return str(result.id) if getattr(result, "is_group", False) else None


def _is_simple(sig: Signature, options: Mapping[str, Any]) -> bool:
    return (sig.subtask_type is None and not sig["options"].get("link")
            and not sig["options"].get("link_error") and not options.get("link")
            and not options.get("link_error"))


def send(app: App, sig: Signature, args: Sequence[Any] | None,
         kwargs: Mapping[str, Any] | None, options: dict[str, Any]) -> Any:
    """Send ``sig`` (any canvas) with partial ``args``/``kwargs`` and ``options``;
    returns its result: an AsyncResult (with ``.parent`` along a chain) or a GroupResult."""
    for option in ("link", "link_error"):
        if option in options and not options[option]:
            del options[option]  # link=None, link=[]: nothing to link
    if sig.subtask_type in ("xmap", "xstarmap"):
        sig = Signature(sig.task, sig.args, sig.kwargs, sig.options, app=sig._app)
    if _is_simple(sig, options):
        merged = sig.clone(args, kwargs, **options)
        if app.conf.task_always_eager and options.get("connection") is None:
            return apply_eagerly(app, merged)
        return app.send_task(merged.task, merged.args, merged.kwargs,
                             _task=app.tasks.get(merged.task), **merged.options)
    if args or kwargs:
        sig = sig.clone(args, kwargs)
    connection = options.pop("connection", None)
    if connection is None and app.connection_provider is not None:
        connection = app.connection_provider()
    if app.conf.task_always_eager and connection is None:
        return apply_eagerly(app, sig.clone(**options))
    limits.check_names("apply_async", options, _WORKFLOW_OPTIONS, {},
                       kind="workflow option")
    node_options = {k: options.pop(k) for k in _NODE_ONLY if k in options}
    if node_options:
        sig = sig.clone()
        for link in _as_list(node_options.pop("link", None)):
            sig.link(link)
        for errback in _as_list(node_options.pop("link_error", None)):
            sig.link_error(errback)
        if "task_id" in node_options:
            _set_id(sig, str(node_options["task_id"]))
        if "group_id" in node_options:
            sig["options"]["group_id"] = node_options["group_id"]
    first_only = {k: options.pop(k) for k in _FIRST_ONLY if k in options}
    if first_only:
        sig = _with_first(sig, first_only)
    plan = Plan(app)
    _, result = plan.add(sig, [], False, options)
    if connection is not None:
        plan.write(connection)
        return result
    try:
        _write_pooled(app, plan)
    except psycopg.OperationalError:
        app.check_pool()  # a connection that died idle: once more on a fresh one
        _write_pooled(app, plan)
    return result


def _write_pooled(app: App, plan: Plan) -> None:
    with app.connection() as conn:
        batches = plan.batches(conn)
        if _one_statement(batches):
            plan.write(conn, batches)
            return
        with conn.transaction():
            plan.write(conn, batches)


def _with_first(sig: Signature, options: dict[str, Any]) -> Signature:
    """``countdown``/``eta`` of a whole workflow: its first steps'."""
    sig = sig.clone()
    kind = sig.subtask_type
    if kind == "chain":
        steps = sig["kwargs"]["tasks"]
        steps[0] = _with_first(maybe_signature(steps[0], sig._app), options)
    elif kind in ("group", "chord"):
        key = "tasks" if kind == "group" else "header"
        sig["kwargs"][key] = [_with_first(maybe_signature(t, sig._app), options)
                              for t in sig["kwargs"][key]]
    else:
        sig["options"].update(options)
    return sig


#: What a workflow's apply_async takes: every send option but those of one job.
_WORKFLOW_OPTIONS = frozenset({
    "countdown", "eta", "expires", "priority", "queue", "task_id", "group_id",
    "ignore_result", "lease", "time_limit", "soft_time_limit", "max_retries",
    "serializer", "routing_key", "headers", "link", "link_error", "track_started",
    "retry", "retry_policy", "shadow",
})


# -- eager runs (task_always_eager, Signature.apply) ------------------------------------
def apply_eagerly(app: App, sig: Signature, previous: Any = None,
                  has_previous: bool = False) -> Any:
    """Run a canvas in this process, step after step, as a worker would run it."""
    from pgqueue.result import EagerResult, GroupResult

    sig = maybe_signature(sig, app)
    if isinstance(sig, chain):
        result: Any = None
        for step in sig.tasks:
            result = apply_eagerly(app, step, previous, has_previous)
            if not result.successful():
                return result
            previous, has_previous = result.result, True
        return result
    if isinstance(sig, (group, chunks)):
        members = sig.group().tasks if isinstance(sig, chunks) else sig.tasks
        results = [apply_eagerly(app, m, previous, has_previous) for m in members]
        return GroupResult(uuid(), results, app=app)
    if isinstance(sig, chord):
        header = apply_eagerly(app, group(sig.tasks, app=app), previous, has_previous)
        body = sig.body
        assert body is not None
        failed = next((r for r in header.results if not r.successful()), None)
        if failed is not None:
            payload = {"exc_type": "ChordError", "exc_module": "pgqueue.exceptions",
                       "exc_message": [f"Dependency {failed.id} raised {failed.result!r}"]}
            return EagerResult(uuid(), "FAILURE", payload, None, app)
        return apply_eagerly(app, body, [r.result for r in header.results], True)
    args = sig.args
    if has_previous and not sig.immutable:
        args = [previous, *args]
    task = app.get_task(sig.task)
    result = task.apply(args, sig.kwargs, task_id=sig.id)
    for link in _as_list(sig["options"].get("link")):
        if result.successful():
            apply_eagerly(app, link, result.result, True)
    for errback in _as_list(sig["options"].get("link_error")):
        if result.failed():
            maybe_signature(errback, app).type(result.id)
    return result
