"""Every SQL statement pgqueue runs, by name.

Runtime code never builds SQL: it asks a :class:`Queries` for a statement by name
(noun first, so names sort by table). The schema is composed in with
``psycopg.sql.Identifier``; everything else is a bound parameter. Templates use
``str.format`` syntax for the schema, so a literal brace is written ``{{`` ``}}``.
"""

from __future__ import annotations

from datetime import datetime

from psycopg import sql

from pgqueue.limits import MAX_SECONDS

# Columns moved from jobs to results when a job ends. Shared by every statement that
# finishes jobs (worker finish, revoke, rescue) so they cannot drift apart.
_RESULT_COLUMNS = (
    "id, queue, task, state, result, error, traceback, args, kwargs, priority, attempt,"
    " worker, unique_key, parent_id, root_id, group_id, meta, created_at, started_at, headers,"
    " task_id"
)


def _replace_results(rows: str) -> str:
    """The earlier result of each id in ``rows`` (a task id sent again), deleted in the
    statement that stores the new one. Partitioned by finish time (opt-in), ``results``
    has no unique index on id for ON CONFLICT: the jobs row's fencing (one DELETE of it
    wins) is what makes a job end once, and this keeps one result per id.

    Only the days a result of these ids can be in are read: from the earliest
    ``result_id_since`` of the batch, -infinity for an id noted in ``results_early``
    (sql/migrations/0013_result_id_time.sql). The bound is known once the jobs rows are
    deleted, so partitions are pruned as the statement runs (not when it is planned)."""
    return f"""replaced AS (
            DELETE FROM {{schema}}.results r WHERE r.id = ANY(ARRAY(SELECT id FROM {rows}))
               AND r.finished_at >= (
                   SELECT min(CASE WHEN e.id IS NULL THEN {{schema}}.result_id_since(n.id)
                                   ELSE '-infinity' END)
                     FROM (SELECT id FROM {rows}) n
                     LEFT JOIN {{schema}}.results_early e ON e.id = n.id)
            RETURNING 1)"""


def _since(id_expr: str) -> str:
    """The earliest finish time a result of the id ``id_expr`` can have (see
    _replace_results): the time in the id, or -infinity for an id in results_early. A
    bound on ``finished_at`` that prunes the partitions of the days before it."""
    return (f"(CASE WHEN (SELECT 1 FROM {{schema}}.results_early x WHERE x.id = {id_expr})"
            f" IS NULL THEN {{schema}}.result_id_since({id_expr})"
            " ELSE '-infinity'::timestamptz END)")


# In the INSERT that follows _replace_results: it reads `replaced` (once, before its first
# row), so the DELETE has run before it inserts. A data-modifying WITH that nothing reads
# runs after the main statement, and on a plain results table (its primary key on id) the
# insert of an id sent again would then fail as a duplicate.
_AFTER_REPLACED = "(SELECT count(*) FROM replaced) >= 0"


# Notify waiters of finished ids, in chunks that stay below NOTIFY's 8000-byte payload.
_NOTIFY_DONE = """
    SELECT pg_notify(%(done_channel)s, string_agg(id::text, ','))
      FROM (SELECT id, (row_number() OVER ()) / 150 AS chunk FROM {finished}) f
     GROUP BY chunk
"""
# Finished jobs that leave a result row. Only those are announced: nobody can wait for the
# rest, and every NOTIFY takes a cluster-wide lock until its transaction's WAL is flushed.
# ``ignore_result`` may come from the producer (the row) or the worker's task (the outcome).
# A job some workflow step waits for (``options.followed``) keeps its result whatever: the
# step that follows reads it (see sql/migrations/0006_canvas.sql).
_STORED = """moved WHERE NOT ((ignore_result OR task_ignores_result) AND final_state = 'SUCCESS'
                       AND NOT options @> '{{"followed": true}}'::jsonb)"""
# The wake-up of a statement whose new jobs (``new``) all go to the queue %(queue)s.
_WAKE_ONE_QUEUE = """
            SELECT pg_notify(%(jobs_channel)s, %(queue)s::text)
             WHERE EXISTS (SELECT 1 FROM new WHERE state = 'queued')"""
_NOTIFY_QUEUES = """
    SELECT pg_notify(%(jobs_channel)s, queue)
      FROM (SELECT DISTINCT queue FROM {woken}) q
"""

# The parts of a workflow beside its jobs (see "canvas_send"): ``steps`` a JSON list of
# waiting steps; the groups as uuid[] and int[] literals ("{...}": an array parses in a
# fraction of what 10,000 JSON strings cost): ``group_ids``, and every group's members
# one after the other in ``group_members``, group n's from ``group_firsts[n]`` to
# ``group_lasts[n]`` (an empty group's first is past its last: an empty slice). In
# canvas_send, ``rows_group`` names the group whose members are the statement's own jobs
# (a flat group, its ids made in order): its members are read from the inserted rows.
def _canvas_parts(rows_group: str = "") -> str:
    return f"""steps AS (
            SELECT * FROM jsonb_to_recordset(%(steps)s::jsonb) AS s(
                id uuid, task text, root_id uuid, parent_id uuid, group_id uuid, job jsonb,
                after uuid[], runs_on text, pass text)
        ), steps_in AS (
            INSERT INTO {{schema}}.canvas_steps (id, task, root_id, parent_id, group_id, job,
                                               after, remaining, runs_on, pass)
            SELECT id, task, root_id, parent_id, group_id, job, after, cardinality(after),
                   runs_on, pass
              FROM steps
        ), edges_in AS (
            INSERT INTO {{schema}}.canvas_edges (before, step)
            SELECT b, s.id FROM steps s, unnest(s.after) AS b
        ), groups_in AS (
            INSERT INTO {{schema}}.canvas_groups (id, members)
            SELECT g.id, m.ids[g.first:g.last]
              FROM unnest(%(group_ids)s::uuid[], %(group_firsts)s::int[],
                          %(group_lasts)s::int[]) AS g(id, first, last),
                   (SELECT %(group_members)s::uuid[] AS ids) m{rows_group}
            ON CONFLICT (id) DO UPDATE SET members = EXCLUDED.members
        )"""


_CANVAS_ROWS_GROUP = """
            UNION ALL
            SELECT %(rows_group)s::uuid, ARRAY(SELECT id FROM new ORDER BY id)
             WHERE %(rows_group)s::uuid IS NOT NULL"""

# One round trip answers for a job wherever it is: final in results, or live in jobs.
# ``{since}``: the days of results it reads (see "result_get_recent").
_RESULT_GET = """
        SELECT true AS final, state, result, error, traceback, finished_at, meta,
               NULL::text AS progress_state, attempt, task, {arguments}, worker,
               NULL::jsonb AS options
          FROM {{schema}}.results WHERE id = %(id)s{since}
        UNION ALL
        SELECT false, state, NULL, last_error, NULL, NULL, meta, progress_state, attempt,
               task, {arguments}, worker, options
          FROM {{schema}}.jobs WHERE id = %(id)s
"""
_RECENT_FOLDED = " AND finished_at >= {schema}.result_id_since(%(id)s::uuid)"
_RECENT = " AND finished_at >= least({schema}.result_id_since(%(id)s::uuid), now())"


def _bounded(name: str, template: str) -> dict[str, str]:
    """A statement that reads results by ``%(id)s`` (``{since}`` after its condition), as
    ``name`` (every result), ``name_recent`` (since the time in the id, a bound capped by
    now() for a prepared statement: one generic plan that prunes as it starts) and
    ``name_recent_unprepared`` (a bound the planner folds: planned for those days only).
    Nothing found bounded may still be there unbounded: see pgqueue.result.read_bounded."""
    return {name: template.format(since=""),
            f"{name}_recent": template.format(since=_RECENT),
            f"{name}_recent_unprepared": template.format(since=_RECENT_FOLDED)}


_RESULT_GET_MANY = """
        SELECT id::text, state, result, error, traceback, finished_at
          FROM {{schema}}.results WHERE id = ANY(%(ids)s::uuid[]){since}
"""
_MANY_RECENT = """
           AND finished_at >= least((SELECT min({schema}.result_id_since(i))
                                       FROM unnest(%(ids)s::uuid[]) i), now())"""

# A window of whole UTC days, [start, end) as literals (pgqueue.result.day_window): the
# planner prunes every other day of partitioned results as it plans, so that the plan
# it keeps (a prepared statement's generic plan) names and locks those days' partitions
# only. A bound it prunes as the plan starts (_RECENT) still locks every partition
# first: 41 relation locks with 25 leaf partitions, 25 of them past the 16 fast-path
# slots, against 10 for the window. Through `results`, so its grants are the ones
# checked, and a day without a partition (not made yet, dropped) is read in
# results_default: no error, no row missed in the window.
_WINDOW = " AND finished_at >= {start} AND finished_at < {end}"
_RESULT_PARENT = """
        SELECT parent_id::text FROM {{schema}}.results WHERE id = %(id)s{since}
        UNION ALL SELECT parent_id::text FROM {{schema}}.jobs WHERE id = %(id)s
        UNION ALL SELECT parent_id::text FROM {{schema}}.canvas_steps WHERE id = %(id)s
"""
_RESULT_FORGET = "DELETE FROM {{schema}}.results WHERE id = %(id)s{since} RETURNING 1"
_LIVE_MANY = """
        UNION ALL
        SELECT id::text, NULL, NULL, NULL, NULL, NULL
          FROM {schema}.jobs WHERE id = ANY(%(ids)s::uuid[])
"""

# Delete control requests past their retention; writers of new requests run it.
_PRUNE_CONTROL = """pruned AS (
            DELETE FROM {schema}.control_requests
             WHERE created_at < now() - make_interval(secs => %(retention)s))"""
# Replies to control requests past the same retention; writers of new requests run it.
_PRUNE_REPLIES = """pruned_replies AS (
            DELETE FROM {schema}.control_replies
             WHERE created_at < now() - make_interval(secs => %(retention)s))"""
# The wake-up after a control request. Its payload is the request's id, for people
# watching with psql; workers ignore it, since anyone can send a notification.
_NOTIFY_CONTROL = "SELECT pg_notify(%(control_channel)s, id::text) FROM requested"


def _insert_jobs(where: str = "") -> str:
    """INSERT of the jobs of one call: what they share comes once, as parameters; each row
    of the JSON parameter ``jobs`` brings only its id and arguments. Every enqueue path
    (producer, scheduler) uses it; see ``producer.JobBatch.params``."""
    return f"""
    INSERT INTO {{schema}}.jobs AS j (
        id, queue, task, args, kwargs, state, priority, run_at, expires_at,
        max_retries, unique_key, parent_id, root_id, group_id, ignore_result, options,
        headers, task_id)
    SELECT r.id, %(queue)s::text, %(task)s::text, r.args, r.kwargs,
           CASE WHEN %(run_at)s::timestamptz IS NULL OR %(run_at)s::timestamptz <= now()
                THEN 'queued' ELSE 'scheduled' END,
           %(priority)s::smallint, coalesce(%(run_at)s::timestamptz, now()),
           %(expires_at)s::timestamptz, %(max_retries)s::integer,
           coalesce(r.unique_key, %(unique_key)s::text),
           %(parent_id)s::uuid, %(root_id)s::uuid, %(group_id)s::uuid,
           %(ignore_result)s::boolean, %(options)s::jsonb, r.headers, r.task_id
      FROM jsonb_to_recordset(%(jobs)s::jsonb)
           AS r(id uuid, args jsonb, kwargs jsonb, unique_key text, headers jsonb, task_id text)
    {where}
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
    RETURNING j.id, j.queue, j.state, j.unique_key
"""


def _insert_one(source: str) -> str:
    """The one-row insert of ``job_insert_one``: the row's values (``{row}`` in
    ``source``: ``VALUES ({row})``, or a ``SELECT {row}`` with a condition), then the
    NOTIFY of its queue when it is queued."""
    row = """%(id)s::uuid, %(queue)s::text, %(task)s::text, %(args)s::jsonb,
                    %(kwargs)s::jsonb,
                    CASE WHEN %(run_at)s::timestamptz IS NULL
                              OR %(run_at)s::timestamptz <= now()
                         THEN 'queued' ELSE 'scheduled' END,
                    %(priority)s::smallint, coalesce(%(run_at)s::timestamptz, now()),
                    %(expires_at)s::timestamptz, %(max_retries)s::integer,
                    %(parent_id)s::uuid, %(root_id)s::uuid, %(group_id)s::uuid,
                    %(ignore_result)s::boolean, %(options)s::jsonb, %(headers)s::jsonb,
                    %(task_id)s::text"""
    return f"""
        WITH new AS (
            INSERT INTO {{schema}}.jobs (
                id, queue, task, args, kwargs, state, priority, run_at, expires_at,
                max_retries, parent_id, root_id, group_id, ignore_result, options,
                headers, task_id)
            {source.format(row=row)}
            RETURNING queue, state
        )
        SELECT pg_notify(%(jobs_channel)s, queue) FROM new WHERE state = 'queued'
    """


# The job of a schedule, inserted only if the statement's `touched` CTE updated the
# schedule row (the compare-and-set that makes each fire insert once). A job whose key
# already finished (it is in results) is not inserted again.
_SCHEDULE_JOB = _insert_jobs("""
     WHERE EXISTS (SELECT 1 FROM touched)
       AND NOT EXISTS (SELECT 1 FROM {schema}.results res
                        WHERE res.unique_key = %(unique_key)s::text)""")

# After a statement's `touched` CTE: insert the schedule's job, wake workers, and answer
# (schedule rows touched, the job's id or NULL, notifications sent).
_SEND_SCHEDULE_JOB = f""", new AS ({_SCHEDULE_JOB}
        ), woken AS ({_NOTIFY_QUEUES.format(woken="new WHERE state = 'queued'")})
        SELECT (SELECT count(*) FROM touched), (SELECT id FROM new),
               (SELECT count(*) FROM woken)"""

_SCHEDULE_COLUMNS = """
    name, task, args, kwargs, options, cron, extract(epoch FROM every)::float8 AS every,
    timezone, enabled, catch_up, next_run_at, last_run_at, total_run_count, source
"""

# Whether the claim ``c`` on a unique key still holds (sends with unique_for= or
# unique_states=, see unique_claims in sql/migrations/0008_unique_periods.sql): not past
# its period, and its job in one of its states (NULL states: any, even once the job's row
# is gone). A job is looked for in jobs, then in results (their states in lower case),
# in the days since its id's time: result_id_bound (sql/migrations/0017) is exact, and
# prunes the days before it as the statement runs.
_CLAIM_HOLDS = """((c.expires_at IS NULL OR c.expires_at > now())
          AND (c.states IS NULL OR coalesce(coalesce(
                   (SELECT h.state FROM {schema}.jobs h WHERE h.id = c.job_id),
                   (SELECT lower(h.state) FROM {schema}.results h WHERE h.id = c.job_id
                       AND h.finished_at >= {schema}.result_id_bound(c.job_id)))
               = ANY(c.states), false)))"""


def _claim_take(rows: str) -> str:
    """The claims a send asks for, one per row of ``rows`` (a FROM item with ``id`` and
    ``claim_key``; keys are distinct: the producer sends later rows of a key after the
    first). A claim is taken when it is free. One written by a transaction this
    statement's snapshot cannot see (a producer that committed the same key an instant
    ago) counts as held whatever its state, and the producer then looks again with
    ``unique_claim_holders``: a subquery here could not see that holder's job."""
    return f"""
        INSERT INTO {{schema}}.unique_claims AS c (key, job_id, states, expires_at)
        SELECT r.claim_key, r.id,
               CASE WHEN %(claim_states)s::jsonb IS NOT NULL THEN ARRAY(
                   SELECT jsonb_array_elements_text(%(claim_states)s::jsonb)) END,
               now() + make_interval(secs => %(claim_for)s::float8)
          FROM {rows}
        ON CONFLICT (key) DO UPDATE SET
            job_id = EXCLUDED.job_id, states = EXCLUDED.states,
            expires_at = EXCLUDED.expires_at, claimed_at = now(),
            xid = pg_current_xact_id()
         WHERE (c.xid = pg_current_xact_id()
                OR pg_visible_in_snapshot(c.xid, pg_current_snapshot()))
           AND NOT {_CLAIM_HOLDS}
        RETURNING c.job_id"""

# schedule_fire's form of _SEND_SCHEDULE_JOB: with ``claim_key`` (a schedule with
# unique_for= or unique_states= in its options, key ``beat:<name>``) the job goes in only
# if it takes the claim; the fire is spent either way.
_SEND_CLAIMED_SCHEDULE_JOB = f""", claimed AS ({_claim_take('''(
            SELECT %(claim_job_id)s::uuid AS id, %(claim_key)s::text AS claim_key
              FROM touched WHERE %(claim_key)s::text IS NOT NULL) r''')}
        ), new AS ({_insert_jobs('''
     WHERE EXISTS (SELECT 1 FROM touched)
       AND (%(claim_key)s::text IS NULL OR r.id IN (SELECT job_id FROM claimed))
       AND NOT EXISTS (SELECT 1 FROM {schema}.results res
                        WHERE res.unique_key = %(unique_key)s::text)''')}
        ), woken AS ({_NOTIFY_QUEUES.format(woken="new WHERE state = 'queued'")})
        SELECT (SELECT count(*) FROM touched), (SELECT id FROM new),
               (SELECT count(*) FROM woken)"""

# The lease of a claimed job: the worker's, or the job's own (``options.lease``) when
# longer, at most a year. Read only from a JSON number and bounded, so that no row's
# options (written by plain SQL, say) can fail the statement that claims or renews it
# and every job beside it.
_LEASE = f"""now() + make_interval(secs => least(greatest(%(lease)s::float8,
                   CASE WHEN jsonb_typeof(j.options -> 'lease') = 'number'
                        THEN least((j.options -> 'lease')::numeric, {MAX_SECONDS})::float8
                   END), {MAX_SECONDS}))"""

# What every claim does with the ids it picked: start them under this worker's lease.
# Arguments and options come back as JSON text: each job decodes its own
# (``ClaimedJob.from_row``), so that one undecodable row fails alone. The attempt stops
# short of integer overflow: a row written by plain SQL at the largest integer would fail
# every claim (it is then far past any max_retries, and fails after this run).
_CLAIM_UPDATE = """
        UPDATE {{schema}}.jobs AS j
           SET state = 'started', attempt = least(j.attempt, 2147483646) + 1,
               worker = %(worker)s,
               started_at = now(), progress_state = NULL, meta = NULL,
               lease_expires_at = {lease}
         WHERE j.id = ANY(ARRAY({claimable}))
     RETURNING j.id::text, j.queue, j.task, j.args::text, j.kwargs::text, j.priority, j.run_at,
               j.expires_at, j.attempt, j.max_retries, j.ignore_result, j.options::text,
               j.parent_id, j.root_id, j.group_id, j.created_at, now() AS claimed_at,
               j.headers::text, j.task_id"""

# The concurrency limit of a keyed job (options.concurrency_limit, 1 to a million; 1 when
# a row written by plain SQL says something else), and how many jobs of a key run.
_KEY_LIMIT = """CASE WHEN jsonb_typeof(j.options -> 'concurrency_limit') = 'number'
              THEN least(greatest((j.options ->> 'concurrency_limit')::numeric, 1),
                         1000000)::integer ELSE 1 END"""
_KEY_RUNNING = """(SELECT count(*) FROM {{schema}}.jobs AS s
                    WHERE s.state = 'started' AND s.concurrency_key = {key})"""

# Seconds until a rate allows its next start (negative: it is allowed already).
_DUE_IN = """CASE WHEN isfinite(next_start_at)
                    THEN extract(epoch FROM next_start_at - now())::float8
                    ELSE '-Infinity'::float8 END"""

# What the claims of unlimited queues leave alone (see pgqueue.worker.gates): jobs with
# a concurrency_key, and, in the ``_held`` variants used only while some task has a rate
# limit, the jobs of those tasks (``held_tasks``). Both are tests of the row the index
# scan visits anyway; but the task test is a separate variant because a generic plan of
# ``job_claim`` with it drains 3x slower (bench.flow), even with the array empty.
_OPEN = "AND concurrency_key IS NULL"
_HELD = "AND task <> ALL(%(held_tasks)s::text[])"

TEMPLATES: dict[str, str] = {
    # -- jobs -----------------------------------------------------------------------
    # Returns how many rows went in (fewer than sent when a unique_key already existed),
    # the NOTIFYs sent, and the ids that went in with a unique_key, comma-separated (only
    # those can have been skipped; a bulk send without keys builds no list). Its jobs
    # share one queue: one wake-up if any is queued, without sorting the rows for their
    # distinct queues (as canvas_send).
    "job_insert": f"""
        WITH new AS ({_insert_jobs()}
        ), woken AS ({_WAKE_ONE_QUEUE})
        SELECT count(*), (SELECT count(*) FROM woken),
               string_agg(id::text, ',') FILTER (WHERE unique_key IS NOT NULL) FROM new
    """,
    # The live jobs holding these unique keys (a JSON array of strings), after an insert
    # skipped some: a separate statement, so that it sees holders committed after the
    # insert's snapshot was taken.
    "job_unique_holders": """
        SELECT unique_key, coalesce(task_id, id::text) FROM {schema}.jobs
         WHERE unique_key IN (SELECT jsonb_array_elements_text(%(keys)s::jsonb))
    """,
    # A send with unique_for= or unique_states=: each row with a ``claim_key`` goes in
    # only if it takes the claim on its key (see _claim_take), in the same statement, so
    # the claim and the job exist together or not at all. Returns what job_insert does.
    "job_insert_claimed": f"""
        WITH claimed AS ({_claim_take('''jsonb_to_recordset(%(jobs)s::jsonb)
                                          AS r(id uuid, claim_key text)
                                    WHERE r.claim_key IS NOT NULL''')}
        ), new AS ({_insert_jobs('''
         WHERE r.id IN (SELECT job_id FROM claimed)
            OR r.id IN (SELECT q.id FROM jsonb_to_recordset(%(jobs)s::jsonb)
                                         AS q(id uuid, claim_key text)
                         WHERE q.claim_key IS NULL)''')}
        ), woken AS ({_NOTIFY_QUEUES.format(woken="new WHERE state = 'queued'")})
        SELECT count(*), (SELECT count(*) FROM woken), string_agg(id::text, ',') FROM new
    """,
    # The claims on these keys (a JSON array of strings) and whether each still holds,
    # after job_insert_claimed took fewer than asked: a statement of its own, so that it
    # sees claims committed after the insert's snapshot was taken.
    "unique_claim_holders": f"""
        SELECT c.key, c.job_id::text, {_CLAIM_HOLDS}
          FROM {{schema}}.unique_claims c
         WHERE c.key IN (SELECT jsonb_array_elements_text(%(keys)s::jsonb))
    """,
    # Claims that can never hold again: past their period, or (without one) whose job
    # finished in a state they do not name, or is gone. A live job may come back into
    # the states (queued after started, for a claim on queued and success). Claims
    # without period or states hold for ever. A claim a send took meanwhile (its writer
    # unseen by this snapshot, whose look-ups of the new holder would find nothing) stays.
    # A result is read in the days since its id's time only (see _CLAIM_HOLDS).
    "unique_claim_prune": """
        WITH pruned AS (
            DELETE FROM {schema}.unique_claims c
             WHERE c.expires_at < now()
                OR (c.expires_at IS NULL AND c.states IS NOT NULL
                    AND pg_visible_in_snapshot(c.xid, pg_current_snapshot())
                    AND NOT EXISTS (SELECT 1 FROM {schema}.jobs h WHERE h.id = c.job_id)
                    AND NOT EXISTS (SELECT 1 FROM {schema}.results h
                                     WHERE h.id = c.job_id
                                       AND h.finished_at >= {schema}.result_id_bound(c.job_id)
                                       AND lower(h.state) = ANY(c.states)))
            RETURNING 1
        )
        SELECT count(*) FROM pruned
    """,
    # The common single send (``delay()``, no ``unique_key``): one VALUES row, no JSON
    # unpacking and no ON CONFLICT. A single enqueue is bound by this statement's cost
    # and its commit, so it is worth its own text. Returns the NOTIFY sent, if any.
    "job_insert_one": _insert_one("VALUES ({row})"),
    # job_insert_one sent again by the producer after a connection died under the first
    # try (pgqueue.client.producer): that try may have committed (a failover loses the
    # answer, not the row) and its job may even have run and finished by now, on another
    # worker. For an id the producer made, a result of it can only be that job's: not
    # inserted again. Bounded by result_id_bound, exact for every id (0017).
    "job_insert_one_again": _insert_one("""SELECT {row}
             WHERE NOT EXISTS (
                   SELECT FROM {{schema}}.results x WHERE x.id = %(id)s::uuid
                      AND x.finished_at >= {{schema}}.result_id_bound(%(id)s::uuid))"""),
    # One ordered scan of the claim index per queue (``queue = ANY(...)`` would make the
    # planner read and sort the whole backlog), then the best ``limit`` of those.
    # Each queue's scan may start after a position (the worker's claim cursor, see
    # pgqueue.worker.claiming): higher priorities from their start, the cursor's priority after
    # it, lower priorities from their start, in that order; Append runs the branches
    # lazily, so a later one is read only when the earlier ones fall short. Priority 10
    # (above any job's) means "from the start". The UPDATE finds its rows by primary key
    # whatever the estimates (the claimer uses generic plans).
    "job_claim": f"""
        WITH claimable AS (
            SELECT c.id FROM unnest(%(queues)s::text[], %(after_priority)s::smallint[],
                                    %(after_run_at)s::timestamptz[], %(after_id)s::uuid[])
                             AS q(name, priority, run_at, id)
             CROSS JOIN LATERAL (
                SELECT * FROM (
                    SELECT * FROM (
                        SELECT id, priority, run_at FROM {{schema}}.jobs
                         WHERE state = 'queued' AND queue = q.name AND priority > q.priority
                           {_OPEN}
                         ORDER BY priority DESC, run_at, id
                         LIMIT %(limit)s FOR UPDATE SKIP LOCKED) higher
                    UNION ALL
                    SELECT * FROM (
                        SELECT id, priority, run_at FROM {{schema}}.jobs
                         WHERE state = 'queued' AND queue = q.name AND priority = q.priority
                           {_OPEN}
                           AND (run_at, id) > (q.run_at, q.id)
                         ORDER BY run_at, id
                         LIMIT %(limit)s FOR UPDATE SKIP LOCKED) same
                    UNION ALL
                    SELECT * FROM (
                        SELECT id, priority, run_at FROM {{schema}}.jobs
                         WHERE state = 'queued' AND queue = q.name AND priority < q.priority
                           {_OPEN}
                         ORDER BY priority DESC, run_at, id
                         LIMIT %(limit)s FOR UPDATE SKIP LOCKED) lower
                ) branches
                LIMIT %(limit)s
             ) c
             ORDER BY c.priority DESC, c.run_at, c.id
             LIMIT %(limit)s
        )
        {_CLAIM_UPDATE.format(claimable="SELECT id FROM claimable", lease=_LEASE)}
    """,
    # The same claim for a worker of one queue, from the start of its claim index: what
    # an idle worker woken by a new job runs. A plain index scan, without the unnest,
    # the three branches and the sort, is ~0.2 ms quicker on a cold machine, and that
    # is a tenth of the enqueue-to-start latency.
    "job_claim_one_queue": f"""
        {_CLAIM_UPDATE.format(lease=_LEASE, claimable=f'''
            SELECT id FROM {{schema}}.jobs
             WHERE state = 'queued' AND queue = (%(queues)s::text[])[1] {_OPEN}
             ORDER BY priority DESC, run_at, id
             LIMIT %(limit)s FOR UPDATE SKIP LOCKED''')}
    """,
    "job_heartbeat": f"""
        UPDATE {{schema}}.jobs AS j
           SET lease_expires_at = {_LEASE}
          FROM unnest(%(ids)s::uuid[], %(attempts)s::integer[]) AS h(id, attempt)
         WHERE j.id = ANY(%(ids)s::uuid[]) AND j.id = h.id AND j.attempt = h.attempt
           AND j.worker = %(worker)s
    """,
    # Final outcomes (SUCCESS, FAILURE, REVOKED) of a batch, fenced on the claimed attempt.
    # ``id = ANY(ids)`` makes the plan look the rows up by primary key. There is no
    # ``state = 'started'`` test: the worker match implies it (a CHECK of the table), and
    # with it the planner may prefer jobs_lease_idx and read every running job per batch.
    "job_finish": f"""
        WITH outcome AS (
            SELECT * FROM jsonb_to_recordset(%(outcomes)s::jsonb) AS o(
                id uuid, attempt integer, state text, result jsonb, error text,
                traceback text, ignore_result boolean)
        ), moved AS (
            DELETE FROM {{schema}}.jobs AS j USING outcome o
             WHERE j.id = ANY(%(ids)s::uuid[]) AND j.id = o.id AND j.attempt = o.attempt
               AND j.worker = %(worker)s
            RETURNING j.*, o.state AS final_state, o.result AS final_result,
                      o.error AS final_error, o.traceback AS final_traceback,
                      coalesce(o.ignore_result, false) AS task_ignores_result
        ), {_replace_results(_STORED)}, stored AS (
            INSERT INTO {{schema}}.results ({_RESULT_COLUMNS})
            SELECT id, queue, task, final_state, final_result, final_error, final_traceback,
                   args, kwargs, priority, attempt, worker, unique_key, parent_id, root_id,
                   group_id, meta, created_at, started_at, headers, task_id
              FROM {_STORED} AND {_AFTER_REPLACED}
        ), notified AS ({_NOTIFY_DONE.format(finished=_STORED)})
        SELECT id, (SELECT count(*) FROM notified) FROM moved
    """,
    # Failed attempts that will run again, fenced like job_finish.
    "job_retry": f"""
        WITH retry AS (
            SELECT * FROM jsonb_to_recordset(%(retries)s::jsonb) AS r(
                id uuid, attempt integer, run_at timestamptz, error text, args jsonb,
                kwargs jsonb)
        ), moved AS (
            UPDATE {{schema}}.jobs AS j
               SET state = CASE WHEN r.run_at <= now() THEN 'queued' ELSE 'retry' END,
                   run_at = greatest(r.run_at, now()), last_error = r.error,
                   worker = NULL, lease_expires_at = NULL, progress_state = NULL,
                   args = coalesce(r.args, j.args), kwargs = coalesce(r.kwargs, j.kwargs)
              FROM retry r
             WHERE j.id = ANY(%(ids)s::uuid[]) AND j.id = r.id AND j.attempt = r.attempt
               AND j.worker = %(worker)s
            RETURNING j.id, j.queue, j.state
        ), woken AS ({_NOTIFY_QUEUES.format(woken="moved WHERE state = 'queued'")})
        SELECT id, (SELECT count(*) FROM woken) FROM moved
    """,
    # Snoozed attempts (``raise self.snooze(seconds)``), fenced like job_finish: the job
    # waits ``seconds`` (scheduled) and its attempt is given back, so max_retries is not
    # spent; ``options.snoozed`` counts the snoozes.
    "job_snooze": f"""
        WITH snooze AS (
            SELECT * FROM jsonb_to_recordset(%(snoozes)s::jsonb) AS s(
                id uuid, attempt integer, seconds float8)
        ), moved AS (
            UPDATE {{schema}}.jobs AS j
               SET state = CASE WHEN s.seconds > 0 THEN 'scheduled' ELSE 'queued' END,
                   run_at = now() + make_interval(secs => s.seconds),
                   attempt = greatest(j.attempt - 1, 0),
                   worker = NULL, lease_expires_at = NULL, progress_state = NULL,
                   options = CASE WHEN jsonb_typeof(j.options) = 'object'
                       THEN j.options || jsonb_build_object('snoozed', CASE
                           WHEN jsonb_typeof(j.options -> 'snoozed') = 'number'
                           THEN least((j.options ->> 'snoozed')::numeric, 2147483646) + 1
                           ELSE 1 END)
                       ELSE j.options END
              FROM snooze s
             WHERE j.id = ANY(%(ids)s::uuid[]) AND j.id = s.id AND j.attempt = s.attempt
               AND j.worker = %(worker)s
            RETURNING j.id, j.queue, j.state
        ), woken AS ({_NOTIFY_QUEUES.format(woken="moved WHERE state = 'queued'")})
        SELECT id, (SELECT count(*) FROM woken) FROM moved
    """,
    # Hand claimed jobs back at shutdown. A job that never started does not spend an attempt.
    "job_release": f"""
        WITH released AS (
            UPDATE {{schema}}.jobs AS j
               SET state = 'queued', worker = NULL, lease_expires_at = NULL,
                   attempt = CASE WHEN r.started THEN j.attempt ELSE j.attempt - 1 END,
                   last_error = CASE WHEN r.started
                       THEN 'WorkerLostError: worker shut down while the task ran'
                       ELSE j.last_error END
              FROM unnest(%(ids)s::uuid[], %(attempts)s::integer[], %(started)s::boolean[])
                   AS r(id, attempt, started)
             WHERE j.id = ANY(%(ids)s::uuid[]) AND j.id = r.id AND j.attempt = r.attempt
               AND j.worker = %(worker)s AND j.state = 'started'
            RETURNING j.id, j.queue
        ), woken AS ({_NOTIFY_QUEUES.format(woken="released")})
        SELECT id, (SELECT count(*) FROM woken) FROM released
    """,
    "job_progress": """
        UPDATE {schema}.jobs SET progress_state = %(state)s, meta = %(meta)s::jsonb
         WHERE id = %(id)s AND attempt = %(attempt)s AND worker = %(worker)s
           AND state = 'started'
    """,
    # update_state(task_id=<another job>): that job's progress while it runs, whoever
    # runs it (a claim clears it, a finish drops it). Returns the row if it was running.
    "job_progress_other": """
        UPDATE {schema}.jobs SET progress_state = %(state)s, meta = %(meta)s::jsonb
         WHERE id = %(id)s AND state = 'started'
        RETURNING id
    """,
    # Promote due scheduled and retry jobs so the claim index sees them.
    "job_stage": f"""
        WITH due AS (
            SELECT id FROM {{schema}}.jobs
             WHERE state IN ('scheduled', 'retry') AND run_at <= now()
             ORDER BY run_at
             LIMIT %(limit)s
               FOR UPDATE SKIP LOCKED
        ), staged AS (
            UPDATE {{schema}}.jobs AS j SET state = 'queued'
              FROM due WHERE j.id = due.id
            RETURNING j.queue
        ), woken AS ({_NOTIFY_QUEUES.format(woken="staged")})
        SELECT (SELECT count(*) FROM staged), (SELECT count(*) FROM woken),
               (SELECT min(run_at) FROM {{schema}}.jobs
                 WHERE state IN ('scheduled', 'retry') AND run_at > now())
    """,
    # Priority aging (see maintenance.PriorityAging): a queued job that has waited n times
    # ``aging`` seconds runs at priority n or more (up to 9). Every row read is a row
    # changed: the queues come from a skip scan of the claim index (one probe per queue),
    # and each queue and priority p is a range of that index, run_at before now minus
    # (p + 1) times ``aging``. The first aging keeps the job's own priority in options.
    "job_age": """
        WITH RECURSIVE queues AS (
            (SELECT queue FROM {schema}.jobs WHERE state = 'queued' ORDER BY queue LIMIT 1)
            UNION ALL
            SELECT (SELECT j.queue FROM {schema}.jobs j
                     WHERE j.state = 'queued' AND j.queue > q.queue
                     ORDER BY j.queue LIMIT 1)
              FROM queues q WHERE q.queue IS NOT NULL
        ), due AS (
            SELECT d.id FROM queues q
             CROSS JOIN generate_series(0, 8) AS p(priority)
             CROSS JOIN LATERAL (
                SELECT id FROM {schema}.jobs
                 WHERE state = 'queued' AND queue = q.queue AND priority = p.priority
                   AND run_at < now() - make_interval(secs => (p.priority + 1) * %(aging)s)
                 ORDER BY run_at
                 LIMIT %(limit)s FOR UPDATE SKIP LOCKED) d
             WHERE q.queue IS NOT NULL
             LIMIT %(limit)s
        ), aged AS (
            UPDATE {schema}.jobs AS j
               SET priority = greatest(j.priority, least(9, floor(
                       extract(epoch FROM now() - j.run_at) / %(aging)s)))::smallint,
                   options = j.options || jsonb_build_object('original_priority',
                       coalesce(j.options->'original_priority', to_jsonb(j.priority)))
             WHERE j.id = ANY(ARRAY(SELECT id FROM due))
            RETURNING 1
        )
        SELECT count(*) FROM aged
    """,
    # Started jobs whose lease ran out: their worker is gone. Requeue them while retries
    # remain, otherwise end them FAILURE with WorkerLostError.
    "job_rescue": f"""
        WITH lost AS (
            SELECT id FROM {{schema}}.jobs
             WHERE state = 'started' AND lease_expires_at < now()
             ORDER BY lease_expires_at
             LIMIT %(limit)s
               FOR UPDATE SKIP LOCKED
        ), requeued AS (
            UPDATE {{schema}}.jobs AS j
               SET state = 'queued', worker = NULL, lease_expires_at = NULL,
                   last_error = 'WorkerLostError: worker ' || coalesce(j.worker, '?')
                                || ' stopped renewing its lease'
              FROM lost
             WHERE j.id = lost.id AND (j.max_retries IS NULL OR j.attempt <= j.max_retries)
            RETURNING j.id, j.queue
        ), failed AS (
            DELETE FROM {{schema}}.jobs AS j USING lost
             WHERE j.id = lost.id AND j.max_retries IS NOT NULL
               AND j.attempt > j.max_retries
            RETURNING j.*
        ), {_replace_results("failed")}, stored AS (
            INSERT INTO {{schema}}.results ({_RESULT_COLUMNS})
            SELECT id, queue, task, 'FAILURE',
                   jsonb_build_object('exc_type', 'WorkerLostError',
                                      'exc_module', 'pgqueue.exceptions',
                                      'exc_message', jsonb_build_array(
                                          'Worker exited prematurely: ' || coalesce(worker, '?'))),
                   'WorkerLostError: worker ' || coalesce(worker, '?')
                       || ' stopped renewing its lease (attempt ' || attempt || ')',
                   NULL, args, kwargs, priority, attempt, worker, unique_key, parent_id,
                   root_id, group_id, meta, created_at, started_at, headers, task_id
              FROM failed WHERE {_AFTER_REPLACED}
        ), woken AS ({_NOTIFY_QUEUES.format(woken="requeued")}
        ), notified AS ({_NOTIFY_DONE.format(finished="failed")})
        SELECT (SELECT count(*) FROM requeued), (SELECT count(*) FROM failed),
               (SELECT count(*) FROM woken), (SELECT count(*) FROM notified)
    """,
    # Jobs that have not started end REVOKED at once; started ones are left to their worker.
    # So do workflow steps still waiting for others (canvas_steps); the results trigger
    # then revokes the steps after them (sql/migrations/0006_canvas.sql).
    # With ``flag_started`` (a revoke; not an abort, whose job runs on, told, if it is
    # rescued) a started job is flagged (options.revoked): whatever ends this attempt, the
    # job never runs again (a retry, a snooze, a rescue of a lost attempt end REVOKED when
    # claimed, on any worker), as Celery's workers discard a revoked id. It is every row
    # not deleted, not only those seen started: a row that a retry, a rescue or a claim
    # changed while this statement waited for it is flagged too (its state then is no
    # longer the one the snapshot saw).
    "job_revoke": f"""
        WITH jobs_moved AS (
            DELETE FROM {{schema}}.jobs
             WHERE id = ANY(%(ids)s::uuid[]) AND state <> 'started'
            RETURNING id, queue, task, args, kwargs, priority, attempt, worker, unique_key,
                      parent_id, root_id, group_id, meta, created_at, started_at, headers,
                      task_id
        ), flagged AS (
            UPDATE {{schema}}.jobs
               SET options = CASE WHEN jsonb_typeof(options) = 'object'
                                  THEN options ELSE jsonb_build_object() END
                             || jsonb_build_object('revoked', true)
             WHERE %(flag_started)s::boolean AND id = ANY(%(ids)s::uuid[])
               AND id NOT IN (SELECT id FROM jobs_moved)
        ), steps_moved AS (
            DELETE FROM {{schema}}.canvas_steps
             WHERE id = ANY(%(ids)s::uuid[])
            RETURNING id, coalesce(job ->> 'queue', 'default') AS queue, task,
                      coalesce(job -> 'args', '[]') AS args,
                      coalesce(job -> 'kwargs', jsonb_build_object()) AS kwargs,
                      0::smallint AS priority, 0 AS attempt, NULL::text AS worker,
                      NULL::text AS unique_key,
                      parent_id, root_id, group_id, NULL::jsonb AS meta, created_at,
                      NULL::timestamptz AS started_at, job -> 'headers' AS headers,
                      NULL::text AS task_id
        ), moved AS (
            SELECT * FROM jobs_moved UNION ALL SELECT * FROM steps_moved
        ), {_replace_results("moved")}, stored AS (
            INSERT INTO {{schema}}.results ({_RESULT_COLUMNS})
            SELECT id, queue, task, 'REVOKED', NULL, %(reason)s, NULL, args, kwargs, priority,
                   attempt, worker, unique_key, parent_id, root_id, group_id, meta,
                   created_at, started_at, headers, task_id
              FROM moved WHERE {_AFTER_REPLACED}
        ), notified AS ({_NOTIFY_DONE.format(finished="moved")})
        SELECT id, (SELECT count(*) FROM notified) FROM moved
    """,
    # -- workflows (pgqueue.client.workflow) ------------------------------------------
    # A workflow's jobs that run at once (one batch of one task), its steps that wait for
    # others with one edge per (predecessor, step), and its groups' members, in one
    # statement: a group of 10,000 costs what apply_many of its jobs costs, plus a row.
    # Answers as job_insert does. The waiting steps are written with their first jobs, so
    # no predecessor can finish before its edges exist.
    # Its jobs share one queue: one wake-up if any of them is queued, without sorting
    # 10,000 rows for their distinct queues.
    "canvas_send": f"""
        WITH new AS ({_insert_jobs()}
        ), woken AS ({_WAKE_ONE_QUEUE}
        ), {_canvas_parts(_CANVAS_ROWS_GROUP)}
        SELECT count(*), (SELECT count(*) FROM woken),
               string_agg(id::text, ',') FILTER (WHERE unique_key IS NOT NULL) FROM new
    """,
    # The same parts when the jobs went in by statements of their own (several tasks,
    # or a unique_key to look up), in the same transaction.
    "canvas_parts_insert": f"WITH {_canvas_parts()} SELECT 1",
    "canvas_group_insert": """
        INSERT INTO {schema}.canvas_groups (id, members)
        SELECT id, members FROM jsonb_to_recordset(%(groups)s::jsonb)
                                AS g(id uuid, members uuid[])
        ON CONFLICT (id) DO UPDATE SET members = EXCLUDED.members
        RETURNING id
    """,
    # A starter job (celery.chain, ... : a periodic workflow) claims its start before it
    # sends the workflow, in the same transaction: NULL when it started it already (a run
    # after its worker died), else the claim's row. Two probes of canvas_starts_pkey:
    # claims whose starter is no longer live are the pruner's (canvas_start_prune), not
    # every start's (whose NOT EXISTS over all claims became a hash anti-join reading
    # every row of jobs once a few thousand claims were waiting).
    "canvas_start_claim": """
        WITH claimed AS (
            INSERT INTO {schema}.canvas_starts (starter) VALUES (%(starter)s::uuid)
            ON CONFLICT (starter) DO NOTHING
            RETURNING starter
        )
        SELECT (SELECT count(*) FROM claimed),
               (SELECT result_id FROM {schema}.canvas_starts WHERE starter = %(starter)s)
    """,
    "canvas_start_done": """
        UPDATE {schema}.canvas_starts SET result_id = %(result_id)s WHERE starter = %(starter)s
    """,
    # The groups older than ``older_than`` seconds (``result_expires``) that nothing
    # needs any more, in canvas_groups_created_idx order from past (``after_at``,
    # ``after_id``) (NULL: from the start): ``limit`` groups are read, and those with no
    # member live in jobs or canvas_steps (a chain's last step), no chord body
    # (``parent_id`` is the group) in jobs, and no result of theirs younger than the
    # retention, are deleted. A chord body waits in canvas_steps only while a member
    # is live, so that case needs no look-up of its own. A group is written in
    # the statement that inserts its members, and nothing makes a finished member live
    # again within the retention but a retry by hand, so what this snapshot saw holds.
    # Each test is a scalar subquery, run per group read through an index, never turned
    # into an anti-join (which may read all of results or jobs, even with no group
    # read); the age of a result is an expression, not ``finished_at >= <cutoff>``, for
    # which the planner would probe results_finished_at_idx's ends on every run.
    # Returns the groups deleted, the groups read and the last one read.
    "canvas_group_prune": """
        WITH read AS (
            SELECT g.id, g.created_at, g.members FROM {schema}.canvas_groups g
             WHERE g.created_at < now() - make_interval(secs => %(older_than)s)
               AND (g.created_at, g.id) > (
                       coalesce(%(after_at)s::timestamptz, '-infinity'),
                       coalesce(%(after_id)s::uuid, '00000000-0000-0000-0000-000000000000'))
             ORDER BY g.created_at, g.id
             LIMIT %(limit)s
        ), idle AS (
            SELECT r.id FROM read r
             WHERE (SELECT 1 FROM {schema}.jobs j WHERE j.id = ANY(r.members) LIMIT 1) IS NULL
               AND (SELECT 1 FROM {schema}.jobs j WHERE j.parent_id = r.id LIMIT 1) IS NULL
               AND (SELECT 1 FROM {schema}.canvas_steps s WHERE s.id = ANY(r.members)
                     LIMIT 1) IS NULL
               AND (SELECT 1 FROM {schema}.results x
                     WHERE x.id = ANY(r.members)
                       AND x.finished_at + make_interval(secs => %(older_than)s) >= now()
                     LIMIT 1) IS NULL
               AND (SELECT 1 FROM {schema}.results x
                     WHERE x.parent_id = r.id
                       AND x.finished_at + make_interval(secs => %(older_than)s) >= now()
                     LIMIT 1) IS NULL
        ), deleted AS (
            DELETE FROM {schema}.canvas_groups g WHERE g.id IN (SELECT id FROM idle)
            RETURNING 1
        ), last AS (
            SELECT created_at, id FROM read ORDER BY created_at DESC, id DESC LIMIT 1
        )
        SELECT (SELECT count(*) FROM deleted), (SELECT count(*) FROM read),
               (SELECT created_at FROM last), (SELECT id::text FROM last)
    """,
    # Whether the oldest group is past the retention: the first entry of
    # canvas_groups_created_idx (an EXISTS may be planned as a sequential scan),
    # so that a run with no group to read does not plan canvas_group_prune (its planning
    # reads a few buffers of results' indexes).
    "canvas_group_due": """
        SELECT coalesce((SELECT created_at FROM {schema}.canvas_groups
                          ORDER BY created_at, id LIMIT 1)
                        < now() - make_interval(secs => %(older_than)s), false)
    """,
    # Claims of starters no longer live (a periodic workflow's starter job): later
    # starts delete them too (canvas_start_claim), but a schedule that stops starting
    # would leave its last ones for ever.
    "canvas_start_prune": """
        WITH pruned AS (
            DELETE FROM {schema}.canvas_starts s
             WHERE s.created_at < now() - interval '1 minute'
               AND (SELECT 1 FROM {schema}.jobs j WHERE j.id = s.starter) IS NULL
            RETURNING 1
        )
        SELECT count(*) FROM pruned
    """,
    # -- the canvas sweeper (pgqueue.services.sweeper): steps nothing will ever release --
    # ``limit`` waiting steps in canvas_steps_pkey order after ``after_id`` (NULL: from
    # the first); of those sent more than ``grace`` seconds ago, the predecessors they
    # still wait for (an edge in canvas_edges) that are not live (in jobs or, a step
    # themselves, in canvas_steps): ``gone``; and the steps that wait for nothing any
    # more, no edge left (rows edited by plain SQL): ``stranded``. Each test is a scalar
    # subquery on a primary key, never an anti-join that may read a whole table.
    # Returns the steps read, the last one read, ``gone`` and ``stranded``.
    "canvas_step_scan": """
        WITH read AS (
            SELECT s.id, s.after, s.created_at FROM {schema}.canvas_steps s
             WHERE s.id > coalesce(%(after_id)s::uuid, '00000000-0000-0000-0000-000000000000')
             ORDER BY s.id
             LIMIT %(limit)s
        ), old AS (
            SELECT id, after FROM read
             WHERE created_at < now() - make_interval(secs => %(grace)s)
        ), pending AS (
            SELECT o.id AS step, b.id AS before
              FROM old o, unnest(o.after) AS b(id)
             WHERE (SELECT 1 FROM {schema}.canvas_edges e
                     WHERE e.before = b.id AND e.step = o.id) IS NOT NULL
        ), gone AS (
            SELECT DISTINCT p.before FROM pending p
             WHERE (SELECT 1 FROM {schema}.jobs j WHERE j.id = p.before) IS NULL
               AND (SELECT 1 FROM {schema}.canvas_steps w WHERE w.id = p.before) IS NULL
        )
        SELECT (SELECT count(*) FROM read),
               (SELECT id::text FROM read ORDER BY id DESC LIMIT 1),
               ARRAY(SELECT before::text FROM gone),
               ARRAY(SELECT id::text FROM old WHERE id NOT IN (SELECT step FROM pending))
    """,
    # The predecessors ``ids`` (``gone`` above, a grace period ago), ended if still
    # waited for and still not live. Their edges are locked first, so that a second
    # sweeper (two leaders for a moment) finds them consumed and ends nothing twice.
    # One with a result (its edges outlived it: a restore or replica that ran without
    # triggers) has its result row rewritten as it is, which fires canvas_advance on it
    # ("replayed"). One with no result gets a REVOKED row with the error ``reason``
    # ("lost"): canvas_advance then stops what waits for it, runs its link_error
    # callbacks, fails a chord body naming it, exactly as after a revoke. Its task and
    # queue are unknown; its root (and group, for a chord's member) are those of a step
    # that waited for it. Results are read by id in the days since the id's time
    # (every day for an id noted in results_early), as _replace_results reads them.
    "canvas_lost_end": f"""
        WITH locked AS (
            SELECT e.before FROM {{schema}}.canvas_edges e
             WHERE e.before = ANY(%(ids)s::uuid[])
             ORDER BY e.before, e.step
               FOR UPDATE
        ), lost AS (
            SELECT DISTINCT l.before AS id FROM locked l
             WHERE (SELECT 1 FROM {{schema}}.jobs j WHERE j.id = l.before) IS NULL
               AND (SELECT 1 FROM {{schema}}.canvas_steps w WHERE w.id = l.before) IS NULL
        ), found AS (
            SELECT l.id, (SELECT 1 FROM {{schema}}.results r
                           WHERE r.id = l.id AND r.finished_at >= {_since("l.id")}
                           LIMIT 1) IS NOT NULL AS final
              FROM lost l
        ), replayed AS (
            UPDATE {{schema}}.results r SET state = r.state
              FROM found f
             WHERE f.final AND r.id = f.id AND r.finished_at >= {_since("f.id")}
            RETURNING r.id
        ), known AS (
            SELECT DISTINCT ON (e.before) e.before AS id, s.root_id,
                   CASE WHEN s.pass = 'list' THEN s.parent_id END AS group_id
              FROM {{schema}}.canvas_edges e JOIN {{schema}}.canvas_steps s ON s.id = e.step
             WHERE e.before IN (SELECT id FROM found WHERE NOT final)
             ORDER BY e.before, s.id
        ), stored AS (
            INSERT INTO {{schema}}.results (id, queue, task, state, error, root_id, group_id,
                                          created_at)
            SELECT f.id, '<unknown>', '<unknown>', 'REVOKED', %(reason)s, k.root_id,
                   k.group_id, now()
              FROM found f LEFT JOIN known k ON k.id = f.id
             WHERE NOT f.final
            RETURNING id
        ), notified AS ({_NOTIFY_DONE.format(finished="stored")})
        SELECT ARRAY(SELECT id::text FROM stored), ARRAY(SELECT id::text FROM replayed),
               (SELECT count(*) FROM notified)
    """,
    # The steps ``ids`` (``stranded`` above, a grace period ago) that still wait for
    # nothing: moved into results as FAILURE (MalformedJob, the error ``reason``), which
    # fires canvas_advance on them: what follows them stops, their link_error callbacks
    # run. Their row is read only where it holds the right types.
    "canvas_stranded_fail": f"""
        WITH moved AS (
            DELETE FROM {{schema}}.canvas_steps s
             WHERE s.id = ANY(%(ids)s::uuid[])
               AND (SELECT 1 FROM unnest(s.after) AS b(id)
                     WHERE (SELECT 1 FROM {{schema}}.canvas_edges e
                             WHERE e.before = b.id AND e.step = s.id) IS NOT NULL
                     LIMIT 1) IS NULL
            RETURNING s.*
        ), stored AS (
            INSERT INTO {{schema}}.results (id, queue, task, state, result, error, args,
                                          kwargs, parent_id, root_id, group_id, created_at)
            SELECT m.id, coalesce(m.job ->> 'queue', 'default'), m.task, 'FAILURE',
                   jsonb_build_object('exc_type', 'MalformedJob',
                                      'exc_module', 'pgqueue.exceptions',
                                      'exc_message', jsonb_build_array(%(reason)s::text)),
                   'MalformedJob: ' || %(reason)s,
                   CASE WHEN jsonb_typeof(m.job -> 'args') = 'array' THEN m.job -> 'args'
                        ELSE '[]'::jsonb END,
                   CASE WHEN jsonb_typeof(m.job -> 'kwargs') = 'object' THEN m.job -> 'kwargs'
                        ELSE '{{{{}}}}'::jsonb END,
                   m.parent_id, m.root_id, m.group_id, m.created_at
              FROM moved m
             WHERE (SELECT 1 FROM {{schema}}.results r
                     WHERE r.id = m.id AND r.finished_at >= {_since("m.id")}) IS NULL
            RETURNING id
        ), notified AS ({_NOTIFY_DONE.format(finished="stored")})
        SELECT ARRAY(SELECT id::text FROM stored), (SELECT count(*) FROM notified)
    """,
    "canvas_group_get": "SELECT members::text[] FROM {schema}.canvas_groups WHERE id = %(id)s",
    "canvas_group_forget": "DELETE FROM {schema}.canvas_groups WHERE id = %(id)s",
    # The final outcomes among ``ids`` (a GroupResult's members), for one wake-up.
    "result_get_many": _RESULT_GET_MANY.format(since=""),
    # The same, reading only the results that finished since the earliest time in the
    # ids (see "result_get_recent"; pruned as the statement runs), and naming the ids
    # live in jobs (a NULL state): those not final and not live are read again with
    # "result_get_many" (pgqueue.result.GroupResult), so that no row is ever hidden.
    "result_get_many_recent": _RESULT_GET_MANY.format(since=_MANY_RECENT) + _LIVE_MANY,
    # Where a job came from and what it started: its parent_id, and the ids whose
    # parent_id it is (live, final or still waiting in a workflow), oldest first.
    **_bounded("result_parent", _RESULT_PARENT),
    # The steps of the workflow ``id`` belongs to (its root's) that have not started:
    # queued, scheduled or retrying jobs and steps still waiting for others. Its root is
    # read in the results since the time in the id first; the whole of results only
    # when none was found elsewhere (coalesce runs a subquery only when it needs it).
    "workflow_unstarted": f"""
        WITH root AS (
            SELECT coalesce(
                (SELECT coalesce(root_id, id) FROM {{schema}}.jobs WHERE id = %(id)s),
                (SELECT coalesce(root_id, id) FROM {{schema}}.results
                  WHERE id = %(id)s{_RECENT}),
                (SELECT coalesce(root_id, id) FROM {{schema}}.canvas_steps
                  WHERE id = %(id)s),
                (SELECT coalesce(root_id, id) FROM {{schema}}.results WHERE id = %(id)s),
                %(id)s::uuid) AS id
        )
        SELECT j.id::text FROM {{schema}}.jobs j, root
         WHERE (j.root_id = root.id OR j.id = root.id) AND j.state <> 'started'
        UNION ALL
        SELECT s.id::text FROM {{schema}}.canvas_steps s, root WHERE s.root_id = root.id
    """,
    "result_children": """
        SELECT id::text, task, created_at FROM (
            SELECT id, task, created_at FROM {schema}.results WHERE parent_id = %(id)s
            UNION ALL SELECT id, task, created_at FROM {schema}.jobs WHERE parent_id = %(id)s
            UNION ALL SELECT id, task, created_at FROM {schema}.canvas_steps
                       WHERE parent_id = %(id)s) c
         ORDER BY created_at, id
    """,
    # Flag running jobs as aborted and ask their workers, by a control request, to tell
    # the task; see pgqueue.contrib.abortable.
    "job_abort": f"""
        WITH flagged AS (
            UPDATE {{schema}}.jobs
               SET options = options || jsonb_build_object('aborted', true)
             WHERE id = ANY(%(ids)s::uuid[]) AND state = 'started'
            RETURNING id
        ), {_PRUNE_CONTROL}, requested AS (
            INSERT INTO {{schema}}.control_requests (action, job_ids)
            SELECT 'abort', array_agg(id) FROM flagged HAVING count(*) > 0
            RETURNING id
        ), notified AS ({_NOTIFY_CONTROL})
        SELECT id, (SELECT count(*) FROM notified) FROM flagged
    """,
    "job_aborted": """
        SELECT id FROM {schema}.jobs
         WHERE id = ANY(%(ids)s::uuid[]) AND options @> '{{"aborted": true}}'::jsonb
    """,
    # -- control requests (pgqueue.control) ----------------------------------------------
    # A request, then a notification that only wakes the workers. Requests older than
    # the retention are deleted on the way: a worker offline for longer than that has
    # lost its jobs to the rescuer anyway.
    "control_request_insert": f"""
        WITH {_PRUNE_CONTROL}, {_PRUNE_REPLIES}, requested AS (
            INSERT INTO {{schema}}.control_requests (action, job_ids, destination, arguments)
            VALUES (%(action)s::text, %(job_ids)s::uuid[], %(destination)s::text[],
                    %(arguments)s::jsonb)
            RETURNING id
        ), notified AS ({_NOTIFY_CONTROL})
        SELECT id, (SELECT count(*) FROM notified) FROM requested
    """,
    # What a worker has not read yet: requests of transactions at or after the horizon
    # of its last read, minus those it read then. The horizon (the oldest transaction
    # still running) is returned with every read, on a row of its own when nothing is
    # new; every transaction before it has ended, so nothing below it can still appear.
    # With no horizon yet (a worker starting) it is today's: older requests are not its.
    "control_request_read": """
        WITH horizon AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin)
        SELECT horizon.xmin::text, r.id, r.action, r.job_ids::text[], r.arguments,
               r.xid::text
          FROM horizon
          LEFT JOIN {schema}.control_requests r
            ON r.xid >= coalesce(%(after)s::text::xid8, horizon.xmin)
           AND r.id <> ALL(%(seen)s::bigint[])
           AND (r.destination IS NULL OR r.destination && %(names)s::text[])
         ORDER BY r.id
    """,
    # A worker's answer to a request that asked for replies; the NOTIFY on the replies
    # channel wakes the caller, which reads the rows (the payload is only the request id).
    # Once per request and worker: a second reply (a request read twice) is dropped.
    "control_reply_insert": """
        WITH replied AS (
            INSERT INTO {schema}.control_replies (request_id, worker, node, reply)
            VALUES (%(request_id)s, %(worker)s, %(node)s, %(reply)s::jsonb)
            ON CONFLICT DO NOTHING
        )
        SELECT pg_notify(%(replies_channel)s, %(request_id)s::text)
    """,
    "control_reply_read": """
        SELECT worker, node, reply FROM {schema}.control_replies
         WHERE request_id = %(request_id)s ORDER BY created_at
    """,
    # -- what `inspect` reads from the tables (pgqueue.control.Inspect) ----------------
    # Jobs held by workers, optionally only ``ids``, with the pid of their worker.
    "job_list_held": """
        SELECT coalesce(j.task_id, j.id::text), j.task, j.worker, j.args, j.kwargs,
               j.attempt, j.priority, j.queue, extract(epoch FROM j.started_at)::float8,
               j.options, w.pid
          FROM {schema}.jobs j LEFT JOIN {schema}.workers w ON w.id = j.worker
         WHERE j.state = 'started'
           AND (%(ids)s::uuid[] IS NULL OR j.id = ANY(%(ids)s::uuid[]))
         ORDER BY j.started_at, j.id
    """,
    # Jobs waiting for their time (eta, countdown, retry delay) in ``queues``, soonest first.
    "job_list_scheduled": """
        SELECT coalesce(task_id, id::text), task, args, kwargs, attempt, priority, queue,
               run_at, state
          FROM {schema}.jobs
         WHERE state IN ('scheduled', 'retry') AND queue = ANY(%(queues)s::text[])
         ORDER BY run_at, id LIMIT %(limit)s
    """,
    # Ids revoked lately (kept as long as their results), newest first.
    "result_list_revoked": """
        SELECT coalesce(task_id, id::text) FROM {schema}.results WHERE state = 'REVOKED'
         ORDER BY finished_at DESC LIMIT %(limit)s
    """,
    # The jobs the autoscaler sees waiting for ``queues`` (counted up to ``limit``).
    "job_count_ready": """
        SELECT count(*) FROM (
            SELECT 1 FROM {schema}.jobs
             WHERE state = 'queued' AND queue = ANY(%(queues)s::text[])
             LIMIT %(limit)s) ready
    """,
    # What a worker changed by remote control (queues, pool size), for `inspect workers`.
    "worker_update": """
        UPDATE {schema}.workers SET queues = %(queues)s, concurrency = %(concurrency)s
         WHERE id = %(id)s
    """,
    # Events (pgqueue.events): one NOTIFY per event, a batch per statement, in order. The
    # payloads come as one text, a line each (JSON text holds no raw newline): a text[]
    # parameter cost the worker more than the rest of the events, its quoting of every
    # '"' of the JSON in Python (psycopg's array dumper).
    "event_notify": """
        SELECT count(pg_notify(%(events_channel)s, payload))
          FROM unnest(string_to_array(%(payloads)s::text, E'\\n'))
               WITH ORDINALITY AS e(payload, n)
    """,
    # Receivers announce themselves (0012): Postgres cannot tell who LISTENs. A row counts
    # while seen_at lies within the freshness window; one from the future (a garbage row)
    # never counts. Registering wakes nobody: publishers look again within a second.
    "event_listeners_fresh": """
        SELECT EXISTS (SELECT FROM {schema}.event_listeners
                        WHERE seen_at > now() - make_interval(secs => %(fresh)s)
                          AND seen_at <= now() + interval '1 second')
    """,
    "event_listener_upsert": """
        INSERT INTO {schema}.event_listeners (id, node, seen_at)
        VALUES (%(id)s, %(node)s, now())
        ON CONFLICT (id) DO UPDATE SET seen_at = now()
    """,
    "event_listener_delete": """
        DELETE FROM {schema}.event_listeners
         WHERE id = %(id)s
            OR seen_at < now() - make_interval(secs => %(stale)s)
            OR seen_at > now() + interval '1 second'
    """,
    # A purged job that a workflow step waits for (a chain's next step, a chord body, a
    # link) ends REVOKED ("purged") instead of vanishing: its row in results fires the
    # canvas trigger, which stops what waits for it (sql/migrations/0006_canvas.sql).
    # A row results may hold already (a job sent again by app.retry) is updated; no
    # unique index on results.id is needed. It is looked for in the days since the
    # earliest time in the ids purged (all days for an id noted in results_early).
    "job_purge": f"""
        WITH purged AS (
            DELETE FROM {{schema}}.jobs
             WHERE state IN ('queued', 'scheduled', 'retry')
               AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
            RETURNING {_RESULT_COLUMNS.replace("state, result, error, traceback, ", "")}
        ), followed AS (
            SELECT * FROM purged p
             WHERE EXISTS (SELECT 1 FROM {{schema}}.canvas_edges e WHERE e.before = p.id)
        ), revised AS (
            UPDATE {{schema}}.results r
               SET state = 'REVOKED', result = NULL, error = %(reason)s, traceback = NULL,
                   finished_at = now()
              FROM followed f WHERE r.id = f.id
               AND r.finished_at >= (
                   SELECT min(CASE WHEN e.id IS NULL THEN {{schema}}.result_id_since(n.id)
                                   ELSE '-infinity' END)
                     FROM followed n LEFT JOIN {{schema}}.results_early e ON e.id = n.id)
            RETURNING r.id
        ), stored AS (
            INSERT INTO {{schema}}.results ({_RESULT_COLUMNS})
            SELECT id, queue, task, 'REVOKED', NULL, %(reason)s, NULL, args, kwargs,
                   priority, attempt, worker, unique_key, parent_id, root_id, group_id, meta,
                   created_at, started_at, headers, task_id
              FROM followed f WHERE f.id NOT IN (SELECT id FROM revised)
        ), notified AS ({_NOTIFY_DONE.format(finished="followed")})
        SELECT count(*), (SELECT count(*) FROM followed) FROM purged
    """,
    "job_counts": """
        SELECT queue, state, count(*), min(run_at) FROM {schema}.jobs
         GROUP BY queue, state ORDER BY queue, state
    """,
    "job_list_started": """
        SELECT coalesce(task_id, id::text), task, worker, attempt, started_at,
               lease_expires_at, progress_state, meta
          FROM {schema}.jobs WHERE state = 'started' ORDER BY started_at
    """,
    # -- flow control (pgqueue.flow, pgqueue.worker.gates) ------------------------------
    # Every limit, with the seconds until each rate allows its next start (by the
    # server's clock); workers read it at most a second apart.
    "flow_limit_list": f"""
        SELECT scope, name, paused, concurrency, rate_count, rate_seconds,
               {_DUE_IN}, source
          FROM {{schema}}.flow_limits ORDER BY scope, name
    """,
    # Which of these queues have queued jobs with a concurrency_key (one probe each).
    "flow_keyed_queues": """
        SELECT q FROM unnest(%(queues)s::text[]) AS q
         WHERE EXISTS (SELECT FROM {schema}.jobs
                        WHERE state = 'queued' AND queue = q AND concurrency_key IS NOT NULL)
    """,
    # The limits of the code (@task(rate_limit=...), task_default_rate_limit,
    # queue_concurrency) that a worker starts with. Limits set at run time (source
    # 'control') are left as they are; rows are written in key order, as claims lock them.
    "flow_limit_sync": """
        INSERT INTO {schema}.flow_limits AS f (
            scope, name, concurrency, rate_count, rate_seconds, source)
        SELECT scope, name, concurrency, rate_count, rate_seconds, 'code'
          FROM jsonb_to_recordset(%(limits)s::jsonb) AS l(
               scope text, name text, concurrency integer, rate_count float8,
               rate_seconds float8)
         WHERE concurrency IS NOT NULL OR rate_count IS NOT NULL
            OR EXISTS (SELECT FROM {schema}.flow_limits e
                        WHERE e.scope = l.scope AND e.name = l.name)
         ORDER BY scope, name
        ON CONFLICT (scope, name) DO UPDATE SET
            concurrency = EXCLUDED.concurrency, rate_count = EXCLUDED.rate_count,
            rate_seconds = EXCLUDED.rate_seconds, updated_at = now()
         WHERE f.source = 'code'
           AND (f.concurrency, f.rate_count, f.rate_seconds) IS DISTINCT FROM
               (EXCLUDED.concurrency, EXCLUDED.rate_count, EXCLUDED.rate_seconds)
    """,
    # The first step of a limited claim: lock the limits it obeys, in key order (so two
    # claimers never wait for each other in a circle), and read them as they are now.
    "flow_limit_lock": f"""
        SELECT scope, name, concurrency, rate_count, rate_seconds,
               {_DUE_IN}
          FROM {{schema}}.flow_limits
         WHERE (scope, name) IN (SELECT * FROM unnest(%(scopes)s::text[], %(names)s::text[]))
         ORDER BY scope, name
           FOR UPDATE
    """,
    "flow_queue_running": """
        SELECT count(*) FROM {schema}.jobs WHERE state = 'started' AND queue = %(queue)s
    """,
    # The jobs a limited claim may take, in claim order: of the whole queue
    # (``whole``), or only those of rate-limited ``tasks`` and those with a key; never
    # of ``blocked`` tasks (rate spent) nor of keys already at their limit (by this
    # statement's snapshot; checked again under the key's lock). Not locked: a look.
    "flow_candidates": f"""
        SELECT j.id, j.task, j.concurrency_key, {_KEY_LIMIT}
          FROM {{schema}}.jobs AS j
         WHERE j.state = 'queued' AND j.queue = %(queue)s
           AND (%(whole)s OR j.task = ANY(%(tasks)s::text[]) OR j.concurrency_key IS NOT NULL)
           AND j.task <> ALL(%(blocked)s::text[])
           AND (j.concurrency_key IS NULL OR {_KEY_RUNNING.format(key="j.concurrency_key")}
                < {_KEY_LIMIT})
         ORDER BY j.priority DESC, j.run_at, j.id
         LIMIT %(scan)s
    """,
    # The same for a queue with no limit of its own whose only held jobs are keyed: a
    # scan of the (small) index of keyed jobs.
    "flow_candidates_keyed": f"""
        SELECT j.id, j.task, j.concurrency_key, {_KEY_LIMIT}
          FROM {{schema}}.jobs AS j
         WHERE j.state = 'queued' AND j.queue = %(queue)s AND j.concurrency_key IS NOT NULL
           AND j.task <> ALL(%(blocked)s::text[])
           AND {_KEY_RUNNING.format(key="j.concurrency_key")} < {_KEY_LIMIT}
         ORDER BY j.priority DESC, j.run_at, j.id
         LIMIT %(scan)s
    """,
    # The second step: one transaction-scoped lock per key, in the order of their
    # hashes, so that the statement after it counts every start of those keys.
    "flow_key_lock": """
        SELECT count(pg_advisory_xact_lock(h))
          FROM (SELECT DISTINCT hashtextextended(%(schema)s || ':' || k, 7) AS h
                  FROM unnest(%(keys)s::text[]) AS k ORDER BY 1) AS hashes
    """,
    # The claim: of the candidates (in claim order), at most ``budget_counts`` per
    # budgeted task, as many per key as the key has room for now, ``limit`` in all.
    "flow_claim": f"""
        WITH candidate AS (
            SELECT * FROM unnest(%(ids)s::uuid[], %(tasks)s::text[], %(keys)s::text[],
                                 %(key_limits)s::integer[])
                   WITH ORDINALITY AS c(id, task, key, key_limit, n)
        ), ranked AS (
            SELECT c.*, row_number() OVER (PARTITION BY c.key ORDER BY c.n) AS key_rank,
                   row_number() OVER (PARTITION BY c.task ORDER BY c.n) AS task_rank
              FROM candidate c
        ), budget AS (
            SELECT * FROM unnest(%(budget_tasks)s::text[], %(budget_counts)s::integer[])
                   AS b(task, n)
        ), chosen AS (
            SELECT r.id FROM ranked r LEFT JOIN budget b ON b.task = r.task
             WHERE (b.task IS NULL OR r.task_rank <= b.n)
               AND (r.key IS NULL OR r.key_rank + {_KEY_RUNNING.format(key="r.key")}
                    <= r.key_limit)
             ORDER BY r.n
             LIMIT %(limit)s
        ), claimable AS (
            SELECT j.id FROM {{schema}}.jobs AS j
             WHERE j.id = ANY(ARRAY(SELECT id FROM chosen)) AND j.state = 'queued'
               FOR UPDATE SKIP LOCKED
        )
        {_CLAIM_UPDATE.format(claimable="SELECT id FROM claimable", lease=_LEASE)}
    """,
    # The last step: rates move on by what was started (``spend`` seconds each), from
    # the time the start was due, or from ``catch_up`` seconds ago if it came later
    # than that (see pgqueue.worker.gates).
    "flow_limit_advance": """
        UPDATE {schema}.flow_limits AS f
           SET next_start_at = greatest(f.next_start_at,
                                        now() - make_interval(secs => a.catch_up))
               + make_interval(secs => a.spend)
          FROM unnest(%(scopes)s::text[], %(names)s::text[], %(catch_up)s::float8[],
                      %(spend)s::float8[]) AS a(scope, name, catch_up, spend)
         WHERE f.scope = a.scope AND f.name = a.name
    """,
    # Set at run time (pgqueue.flow): one field of a queue's or a task's limits, then a
    # wake-up on the control channel so that every worker reads the limits again.
    "flow_limit_set": """
        WITH changed AS (
            INSERT INTO {schema}.flow_limits AS f (
                scope, name, paused, concurrency, rate_count, rate_seconds, source)
            VALUES (%(scope)s::text, %(name)s::text, coalesce(%(paused)s::boolean, false),
                    %(concurrency)s::integer, %(rate_count)s::float8,
                    %(rate_seconds)s::float8, 'control')
            ON CONFLICT (scope, name) DO UPDATE SET
                paused = coalesce(%(paused)s::boolean, f.paused),
                concurrency = CASE WHEN %(set_concurrency)s THEN EXCLUDED.concurrency
                                   ELSE f.concurrency END,
                rate_count = CASE WHEN %(set_rate)s THEN EXCLUDED.rate_count
                                  ELSE f.rate_count END,
                rate_seconds = CASE WHEN %(set_rate)s THEN EXCLUDED.rate_seconds
                                    ELSE f.rate_seconds END,
                source = CASE WHEN %(set_concurrency)s OR %(set_rate)s THEN 'control'
                              ELSE f.source END,
                updated_at = now()
            RETURNING name
        )
        SELECT pg_notify(%(control_channel)s, 'flow') FROM changed
    """,
    # Whether anything names the queue: a job, a limit, or a live worker consuming it.
    "flow_queue_known": """
        SELECT EXISTS (SELECT FROM {schema}.jobs WHERE queue = %(name)s)
            OR EXISTS (SELECT FROM {schema}.flow_limits
                        WHERE scope = 'queue' AND name = %(name)s)
            OR EXISTS (SELECT FROM {schema}.workers WHERE %(name)s = ANY(queues))
    """,
    # `pgqueue queue list`: every queue that has jobs, a limit or a worker.
    "flow_queue_list": """
        WITH counts AS (
            SELECT queue, count(*) FILTER (WHERE state = 'queued') AS queued,
                   count(*) FILTER (WHERE state = 'started') AS running,
                   count(*) FILTER (WHERE state IN ('scheduled', 'retry')) AS waiting
              FROM {schema}.jobs GROUP BY queue
        ), consumed AS (
            SELECT DISTINCT unnest(queues) AS queue FROM {schema}.workers
        ), named AS (
            SELECT queue FROM counts
            UNION SELECT name FROM {schema}.flow_limits WHERE scope = 'queue'
            UNION SELECT queue FROM consumed
        )
        SELECT n.queue, coalesce(l.paused, false), coalesce(c.queued, 0),
               coalesce(c.running, 0), coalesce(c.waiting, 0), l.concurrency,
               l.rate_count, l.rate_seconds, l.source,
               (SELECT count(*) FROM {schema}.workers w WHERE n.queue = ANY(w.queues))
          FROM named n
          LEFT JOIN counts c ON c.queue = n.queue
          LEFT JOIN {schema}.flow_limits l ON l.scope = 'queue' AND l.name = n.queue
         ORDER BY n.queue
    """,
    # -- results ----------------------------------------------------------------------
    "result_get": _RESULT_GET.format(arguments="args, kwargs", since=""),
    # The same for a role that may not read arguments (a producer's, see pgqueue.roles).
    "result_get_state": _RESULT_GET.format(arguments="NULL::jsonb, NULL::jsonb", since=""),
    # The same, reading only the results that finished after the time in the id (a
    # UUIDv7's, less an hour; every result for any other id): on partitioned results,
    # the partitions of those days only. Nothing found may still be a result of a clock
    # that was wrong or of an id made up: the caller then reads again with "result_get"
    # (pgqueue.result.read_row). For a prepared statement the bound is capped by now(),
    # which the planner cannot fold: the plan cache then keeps one generic plan, which
    # prunes as it starts (0.1 ms with ten days of history, where a bound it folds made
    # it plan every execution anew: 0.9 ms).
    "result_get_recent": _RESULT_GET.format(arguments="args, kwargs", since=_RECENT),
    "result_get_state_recent": _RESULT_GET.format(arguments="NULL::jsonb, NULL::jsonb",
                                                  since=_RECENT),
    # ... and for a connection that never prepares (through a pooler), planned at each
    # execution: a bound the planner folds into a constant, so that it plans the
    # partitions of those days only (0.8 ms, where the capped bound planned them all: 3 ms).
    "result_get_recent_unprepared": _RESULT_GET.format(arguments="args, kwargs",
                                                       since=_RECENT_FOLDED),
    "result_get_state_recent_unprepared": _RESULT_GET.format(
        arguments="NULL::jsonb, NULL::jsonb", since=_RECENT_FOLDED),
    # Retry by hand: final jobs (by ``ids``, or by task, state and finish time) go back
    # to jobs under their id, queued, with a fresh count of attempts; the outcome they
    # leave is kept in job_history. ``defaults``: per task (NULL: any other), the
    # max_retries, options and ignore_result of a new send. A job whose id is live again,
    # or whose unique_key a live job holds, stays where it is. By ``ids``, only the days
    # since the earliest time in them are read (-infinity for an id noted in
    # results_early, see _replace_results), and the rows picked are deleted in their day.
    "result_retry": f"""
        WITH picked AS (
            SELECT r.id, r.finished_at FROM {{schema}}.results r
             WHERE (%(ids)s::uuid[] IS NULL OR r.id = ANY(%(ids)s::uuid[])
                    AND r.finished_at >= (
                        SELECT min(CASE WHEN e.id IS NULL
                                        THEN {{schema}}.result_id_since(i)
                                        ELSE '-infinity' END)
                          FROM unnest(%(ids)s::uuid[]) i
                          LEFT JOIN {{schema}}.results_early e ON e.id = i))
               AND (%(task)s::text IS NULL OR r.task = %(task)s::text)
               AND r.state = ANY(%(states)s::text[])
               AND (%(since)s::timestamptz IS NULL OR r.finished_at >= %(since)s::timestamptz)
               AND NOT EXISTS (SELECT 1 FROM {{schema}}.jobs l WHERE l.id = r.id)
               AND (r.unique_key IS NULL OR NOT EXISTS (
                        SELECT 1 FROM {{schema}}.jobs l WHERE l.unique_key = r.unique_key))
             ORDER BY r.finished_at, r.id
             LIMIT %(limit)s
               FOR UPDATE OF r
        ), moved AS (
            DELETE FROM {{schema}}.results r USING picked
             WHERE r.id = picked.id AND r.finished_at = picked.finished_at
            RETURNING r.*
        ), kept AS (
            INSERT INTO {{schema}}.job_history (
                job_id, task, state, attempt, error, traceback, result, worker, started_at,
                finished_at)
            SELECT id, task, state, attempt, error, traceback, result, worker, started_at,
                   finished_at
              FROM moved
        ), defaults AS (
            SELECT * FROM jsonb_to_recordset(%(defaults)s::jsonb) AS d(
                task text, max_retries integer, options jsonb, ignore_result boolean)
        ), new AS (
            INSERT INTO {{schema}}.jobs (
                id, queue, task, args, kwargs, state, priority, run_at, attempt, max_retries,
                unique_key, parent_id, root_id, group_id, ignore_result, options, created_at,
                headers, task_id)
            SELECT m.id, m.queue, m.task, m.args, m.kwargs, 'queued', m.priority, now(), 0,
                   CASE WHEN d.task IS NULL THEN o.max_retries ELSE d.max_retries END,
                   m.unique_key, m.parent_id, m.root_id, m.group_id,
                   coalesce(d.ignore_result, o.ignore_result, false),
                   coalesce(d.options, o.options, '{{{{}}}}'::jsonb), m.created_at, m.headers,
                   m.task_id
              FROM moved m
              LEFT JOIN defaults d ON d.task = m.task
              LEFT JOIN defaults o ON o.task IS NULL
            RETURNING id, queue, task_id
        ), woken AS ({_NOTIFY_QUEUES.format(woken="new")})
        SELECT id::text, (SELECT count(*) FROM woken), coalesce(task_id, id::text) FROM new
    """,
    # What retries by hand replaced, oldest first (AsyncResult.history()).
    "job_history_get": """
        SELECT state, attempt, error, traceback, result, worker, started_at, finished_at,
               retried_at, retried_by
          FROM {schema}.job_history WHERE job_id = %(id)s ORDER BY id
    """,
    "job_history_prune": """
        WITH pruned AS (
            DELETE FROM {schema}.job_history
             WHERE retried_at < now() - make_interval(secs => %(older_than)s)
            RETURNING 1
        )
        SELECT count(*) FROM pruned
    """,
    # Forget a result: first in the results since the time in the id; when that deleted
    # nothing, in the whole of results (pgqueue.result.AsyncResult.forget).
    **_bounded("result_forget", _RESULT_FORGET),
    # The next ``limit`` notes of results_early after ``after`` (by its primary key),
    # deleted when their id has no result any more; (the last id read, how many read,
    # how many deleted). A note written again meanwhile (a result of its id, sent again,
    # that this statement cannot see yet) is a newer version of the row: the delete
    # waits for it, finds xmin changed and leaves it (sql/migrations/0016).
    "results_early_prune": """
        WITH scanned AS MATERIALIZED (
            SELECT id, xmin AS version FROM {schema}.results_early
             WHERE %(after)s::uuid IS NULL OR id > %(after)s::uuid
             ORDER BY id LIMIT %(limit)s
        ), gone AS (
            DELETE FROM {schema}.results_early e USING scanned s
             WHERE e.id = s.id AND e.xmin = s.version
               AND NOT EXISTS (SELECT 1 FROM {schema}.results r WHERE r.id = e.id)
            RETURNING 1
        )
        SELECT (SELECT id FROM scanned ORDER BY id DESC LIMIT 1)::text,
               (SELECT count(*) FROM scanned), (SELECT count(*) FROM gone)
    """,
    # The oldest expired results of one kind (``success``: SUCCESS, false: every other
    # state, NULL: all), in the order of results_finished_at_idx, deleted by their row
    # address (a TID scan: no second index look-up per row). All of them on a plain
    # results table; on a partitioned one only for a retention shorter than a day (a
    # day's partition): longer ones go by whole partitions (result_partition_prune).
    # ``after`` starts the scan past the rows this run already deleted, whose dead index
    # entries a scan from the start would step over again (NULL: from the start).
    # Addresses repeat across partitions, so the DELETE tests the expiry again: a row
    # of another partition at the same address goes only if it is expired too.
    "result_prune": """
        WITH doomed AS (
            SELECT ctid, finished_at FROM {schema}.results
             WHERE finished_at < now() - make_interval(secs => %(older_than)s)
               AND finished_at >= coalesce(%(after)s::timestamptz, '-infinity')
               AND (%(success)s::boolean IS NULL OR (state = 'SUCCESS') = %(success)s)
             ORDER BY finished_at
             LIMIT %(limit)s
        ), deleted AS (
            DELETE FROM {schema}.results
             WHERE ctid = ANY(ARRAY(SELECT ctid FROM doomed))
               AND finished_at < now() - make_interval(secs => %(older_than)s)
               AND (%(success)s::boolean IS NULL OR (state = 'SUCCESS') = %(success)s)
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM deleted), (SELECT max(finished_at) FROM doomed)
    """,
    # The expired results of one kind (``success``: SUCCESS, false: every other state)
    # on a plain results table whose two kinds are kept for different times. The rows
    # of the other kind, kept for longer, fill the finish-time range of the shorter
    # retention (no index has the state), so the pruner reads on from the last finish
    # time it read (``after``; NULL: from the start), run after run: each row is read
    # once, not on every run. A batch reads the ``limit`` rows that finished next, and
    # the rest of the instant the last of them finished at (one finish statement gives
    # all its rows one time), so that the next batch starts past it; it deletes those
    # of the kind. Returns the rows deleted, the rows read and the last finish time read.
    "result_prune_kind": """
        WITH upto AS (
            SELECT coalesce((
                SELECT finished_at FROM {schema}.results
                 WHERE finished_at < now() - make_interval(secs => %(older_than)s)
                   AND finished_at >= coalesce(%(after)s::timestamptz, '-infinity')
                   AND (%(after)s::timestamptz IS NULL OR finished_at > %(after)s)
                 ORDER BY finished_at OFFSET %(limit)s - 1 LIMIT 1),
                now() - make_interval(secs => %(older_than)s)) AS finished_at
        ), scanned AS (
            SELECT r.ctid, r.finished_at, r.state = 'SUCCESS' AS success
              FROM {schema}.results r, upto
             WHERE r.finished_at < now() - make_interval(secs => %(older_than)s)
               AND r.finished_at <= upto.finished_at
               AND r.finished_at >= coalesce(%(after)s::timestamptz, '-infinity')
               AND (%(after)s::timestamptz IS NULL OR r.finished_at > %(after)s)
        ), deleted AS (
            DELETE FROM {schema}.results
             WHERE ctid = ANY(ARRAY(SELECT ctid FROM scanned WHERE success = %(success)s))
               AND finished_at < now() - make_interval(secs => %(older_than)s)
               AND (state = 'SUCCESS') = %(success)s
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM deleted), (SELECT count(*) FROM scanned),
               (SELECT max(finished_at) FROM scanned)
    """,
    # Whether results is partitioned (pgqueue migrate --partition-results): the
    # partitions' services then take over from the row-by-row pruner.
    "result_partitioned": """
        SELECT c.relkind = 'p' FROM pg_class c WHERE c.oid = %(table)s::regclass
    """,
    "results_partition": "SELECT {schema}.results_partition()",
    # The partitions of today (UTC, by the server's clock) and the ``days`` - 1 days
    # after; how many were added (sql/migrations/0010_partitioned_results.sql).
    "result_partition_add": """
        SELECT count(*) FILTER (WHERE {schema}.results_partition_add(d))
          FROM (SELECT (now() AT TIME ZONE 'UTC')::date + n AS d
                  FROM generate_series(0, %(days)s::integer - 1) AS n) days
    """,
    # Drop or archive the partitions past retention (NULL: kept for ever).
    "result_partition_prune": """
        SELECT partition, approx_rows, archived
          FROM {schema}.results_partition_prune(
              now() - make_interval(secs => %(success_for)s::float8),
              now() - make_interval(secs => %(other_for)s::float8), %(archive)s::text)
    """,
    # The partitions of results (days and their state partitions), oldest first.
    "result_partition_list": """
        SELECT c.relname::text, p.relname::text, pg_get_expr(c.relpartbound, c.oid),
               c.relkind = 'p', greatest(c.reltuples, 0)::bigint
          FROM pg_inherits i
          JOIN pg_class c ON c.oid = i.inhrelid
          JOIN pg_class p ON p.oid = i.inhparent
         WHERE i.inhparent = %(table)s::regclass
            OR i.inhparent IN (SELECT inhrelid FROM pg_inherits
                                WHERE inhparent = %(table)s::regclass)
         ORDER BY c.relname
    """,
    "result_oldest": "SELECT min(finished_at) FROM {schema}.results",
    # -- workers ----------------------------------------------------------------------
    "worker_register": """
        INSERT INTO {schema}.workers (id, hostname, pid, queues, concurrency, pool)
        VALUES (%(id)s, %(hostname)s, %(pid)s, %(queues)s, %(concurrency)s, %(pool)s)
        ON CONFLICT (id) DO UPDATE SET last_seen_at = now()
    """,
    "worker_heartbeat": "UPDATE {schema}.workers SET last_seen_at = now() WHERE id = %(id)s",
    "worker_deregister": "DELETE FROM {schema}.workers WHERE id = %(id)s",
    "worker_prune": """
        DELETE FROM {schema}.workers
         WHERE last_seen_at < now() - make_interval(secs => %(older_than)s)
    """,
    # Ages by the server's clock, so that a skewed client clock cannot make a worker look dead.
    "worker_list": """
        SELECT id, hostname, pid, queues, concurrency, pool, started_at, last_seen_at,
               round(extract(epoch FROM now() - last_seen_at)::numeric, 1)::float8,
               last_seen_at > now() - make_interval(secs => %(alive_within)s)
          FROM {schema}.workers ORDER BY started_at
    """,
    # -- leader -----------------------------------------------------------------------
    # Take the lease if it is free or expired, or renew it if we hold it. Returns the term
    # when we lead, no row when someone else does.
    "leader_acquire": """
        INSERT INTO {schema}.leader AS l (id, holder, term, expires_at)
        VALUES (1, %(holder)s, 1, now() + make_interval(secs => %(ttl)s))
        ON CONFLICT (id) DO UPDATE SET
            term = CASE WHEN l.holder = EXCLUDED.holder THEN l.term ELSE l.term + 1 END,
            elected_at = CASE WHEN l.holder = EXCLUDED.holder THEN l.elected_at ELSE now() END,
            holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
         WHERE l.holder = EXCLUDED.holder OR l.expires_at < now()
        RETURNING term
    """,
    "leader_release": """
        UPDATE {schema}.leader SET expires_at = now() - interval '1 second'
         WHERE holder = %(holder)s
    """,
    "leader_get": "SELECT holder, term, elected_at, expires_at FROM {schema}.leader",
    # -- migrations (pgqueue.db.migrations) -------------------------------------------------
    "migration_lock": "SELECT pg_advisory_xact_lock(hashtext(%(key)s))",
    "migration_versions": "SELECT version FROM {schema}.schema_version",
    "migration_table_exists": "SELECT to_regclass(%(table)s) IS NOT NULL",
    "schema_create": "CREATE SCHEMA IF NOT EXISTS {schema}",
    "schema_exists": "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = %(schema)s)",
    "schema_search_path": "SET LOCAL search_path TO {schema}",
    "migration_table_create": """
        CREATE TABLE IF NOT EXISTS {schema}.schema_version (
            version integer PRIMARY KEY, name text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now())
    """,
    "migration_record": """
        INSERT INTO {schema}.schema_version (version, name) VALUES (%(version)s, %(name)s)
    """,
    # -- schedules --------------------------------------------------------------------
    # The clock (the database's unless a test passes one), the due schedules, and when the
    # next one is due. Always one row; schedule columns are NULL when nothing is due.
    "schedule_due": """
        WITH clock AS (SELECT coalesce(%(now)s::timestamptz, now()) AS now)
        SELECT clock.now, s.name, s.task, s.args, s.kwargs, s.options, s.cron,
               extract(epoch FROM s.every)::float8, s.timezone, s.catch_up, s.next_run_at,
               (SELECT min(n.next_run_at) FROM {schema}.schedules n
                 WHERE n.enabled AND n.next_run_at > clock.now)
          FROM clock
          LEFT JOIN LATERAL (
              SELECT * FROM {schema}.schedules
               WHERE enabled AND (next_run_at <= clock.now OR next_run_at IS NULL)
               ORDER BY next_run_at NULLS FIRST
               LIMIT %(limit)s) s ON true
    """,
    # One fire: move next_run_at on only if it still holds the due time we read, and
    # insert the job in the same statement. Two schedulers racing: one updates, one waits
    # for its row lock, re-reads next_run_at, matches nothing and inserts nothing.
    "schedule_fire": f"""
        WITH touched AS (
            UPDATE {{schema}}.schedules
               SET next_run_at = %(next_run_at)s::timestamptz,
                   last_run_at = %(now)s::timestamptz,
                   total_run_count = total_run_count + 1, updated_at = now()
             WHERE name = %(name)s::text AND enabled AND next_run_at = %(due)s::timestamptz
            RETURNING name
        ){_SEND_CLAIMED_SCHEDULE_JOB}
    """,
    # Move next_run_at on without a job: skipped fires, or a first computation.
    "schedule_advance": """
        UPDATE {schema}.schedules
           SET next_run_at = %(next_run_at)s::timestamptz, updated_at = now()
         WHERE name = %(name)s::text AND enabled
           AND next_run_at IS NOT DISTINCT FROM %(due)s::timestamptz
    """,
    # Send a schedule's job now, outside its timetable (`pgqueue schedule run-now`).
    "schedule_run_now": f"""
        WITH touched AS (
            UPDATE {{schema}}.schedules
               SET last_run_at = now(), total_run_count = total_run_count + 1,
                   updated_at = now()
             WHERE name = %(name)s::text
            RETURNING name
        ){_SEND_SCHEDULE_JOB}
    """,
    # Write the code's schedules: new ones get their first fire time; a changed timetable
    # gets a new one; others keep theirs, and their enabled flag (an operator's choice).
    # Code schedules no longer in the code are removed.
    "schedule_sync": """
        WITH defined AS (
            SELECT * FROM jsonb_to_recordset(%(schedules)s::jsonb) AS d(
                name text, task text, args jsonb, kwargs jsonb, options jsonb, cron text,
                every float8, timezone text, catch_up boolean, next_run_at timestamptz)
        ), upserted AS (
            INSERT INTO {schema}.schedules AS s (
                name, task, args, kwargs, options, cron, every, timezone, catch_up,
                next_run_at, source)
            SELECT name, task, args, kwargs, options, cron, make_interval(secs => every),
                   timezone, catch_up, next_run_at, 'code'
              FROM defined
            ON CONFLICT (name) DO UPDATE SET
                task = EXCLUDED.task, args = EXCLUDED.args, kwargs = EXCLUDED.kwargs,
                options = EXCLUDED.options, cron = EXCLUDED.cron, every = EXCLUDED.every,
                timezone = EXCLUDED.timezone, catch_up = EXCLUDED.catch_up,
                source = 'code', updated_at = now(),
                next_run_at = CASE
                    WHEN s.next_run_at IS NULL OR s.cron IS DISTINCT FROM EXCLUDED.cron
                      OR s.every IS DISTINCT FROM EXCLUDED.every
                      OR s.timezone <> EXCLUDED.timezone
                    THEN EXCLUDED.next_run_at ELSE s.next_run_at END
             WHERE s.next_run_at IS NULL
                OR (s.task, s.args, s.kwargs, s.options, s.cron, s.every, s.timezone,
                    s.catch_up, s.source)
                   IS DISTINCT FROM (EXCLUDED.task, EXCLUDED.args, EXCLUDED.kwargs,
                                     EXCLUDED.options, EXCLUDED.cron, EXCLUDED.every,
                                     EXCLUDED.timezone, EXCLUDED.catch_up, 'code')
            RETURNING s.name
        ), removed AS (
            DELETE FROM {schema}.schedules
             WHERE source = 'code' AND name NOT IN (SELECT name FROM defined)
            RETURNING name
        )
        SELECT (SELECT array_agg(name ORDER BY name) FROM upserted),
               (SELECT array_agg(name ORDER BY name) FROM removed)
    """,
    # `pgqueue schedule add`; with replace=false an existing name returns no row.
    "schedule_insert": """
        INSERT INTO {schema}.schedules AS s (
            name, task, args, kwargs, options, cron, every, timezone, catch_up, enabled,
            next_run_at, source)
        VALUES (%(name)s::text, %(task)s::text, %(args)s::jsonb, %(kwargs)s::jsonb,
                %(options)s::jsonb, %(cron)s::text, make_interval(secs => %(every)s::float8),
                %(timezone)s::text, %(catch_up)s::boolean, %(enabled)s::boolean,
                %(next_run_at)s::timestamptz, 'db')
        ON CONFLICT (name) DO UPDATE SET
            task = EXCLUDED.task, args = EXCLUDED.args, kwargs = EXCLUDED.kwargs,
            options = EXCLUDED.options, cron = EXCLUDED.cron, every = EXCLUDED.every,
            timezone = EXCLUDED.timezone, catch_up = EXCLUDED.catch_up,
            enabled = EXCLUDED.enabled, next_run_at = EXCLUDED.next_run_at,
            source = 'db', updated_at = now()
         WHERE %(replace)s::boolean
        RETURNING name
    """,
    "schedule_list": f"SELECT {_SCHEDULE_COLUMNS} FROM {{schema}}.schedules ORDER BY name",
    "schedule_get": f"""
        SELECT {_SCHEDULE_COLUMNS} FROM {{schema}}.schedules WHERE name = %(name)s::text
    """,
    "schedule_delete": """
        DELETE FROM {schema}.schedules WHERE name = %(name)s::text RETURNING source
    """,
    # Enabling sets a fresh next_run_at, so a schedule paused for a week does not fire at
    # once for the fires it missed while paused.
    "schedule_set_enabled": """
        UPDATE {schema}.schedules
           SET next_run_at = CASE WHEN enabled THEN next_run_at
                                  ELSE coalesce(%(next_run_at)s::timestamptz, next_run_at) END,
               enabled = %(enabled)s::boolean, updated_at = now()
         WHERE name = %(name)s::text
        RETURNING name
    """,
    # -- metrics (`pgqueue metrics`): what the database knows, read at each scrape ------
    # Jobs by queue and state, with the age of the oldest by the server's clock (for the
    # queued state: how long the first job in line has waited).
    "job_metrics": """
        SELECT queue, state, count(*)::float8,
               greatest(extract(epoch FROM now() - min(run_at)), 0)::float8
          FROM {schema}.jobs GROUP BY queue, state
    """,
    # Results that finished within the window, by queue, task and state (results_finished_at_idx).
    "result_metrics": """
        SELECT queue, task, state, count(*)::float8
          FROM {schema}.results
         WHERE finished_at > now() - make_interval(secs => %(window)s::float8)
         GROUP BY queue, task, state
    """,
    "worker_metrics": """
        SELECT count(*) FILTER (WHERE alive)::float8, count(*) FILTER (WHERE NOT alive)::float8,
               coalesce(sum(concurrency) FILTER (WHERE alive), 0)::float8
          FROM (SELECT concurrency,
                       last_seen_at > now() - make_interval(secs => %(alive_within)s) AS alive
                  FROM {schema}.workers) w
    """,
    "schedule_metrics": """
        SELECT name, task, extract(epoch FROM next_run_at)::float8
          FROM {schema}.schedules WHERE enabled AND next_run_at IS NOT NULL
    """,
}

# The reads of results by id in a window of UTC days (see _WINDOW), by the name of the
# statement each stands for: {start} and {end} are timestamptz literals, composed in
# by Queries.window. "result_get_many" answers as "result_get_many_recent" does (ids live
# in jobs with a NULL state).
WINDOWED = {
    "result_get": _RESULT_GET.format(arguments="args, kwargs", since=_WINDOW),
    "result_get_state": _RESULT_GET.format(arguments="NULL::jsonb, NULL::jsonb",
                                           since=_WINDOW),
    "result_parent": _RESULT_PARENT.format(since=_WINDOW),
    "result_forget": _RESULT_FORGET.format(since=_WINDOW),
    "result_get_many": _RESULT_GET_MANY.format(since=_WINDOW) + _LIVE_MANY,
}

# The same, in the DEFAULT partition of results only (see pgqueue.services.pruner).
TEMPLATES["result_prune_default"] = TEMPLATES["result_prune"].replace(
    "{schema}.results", "{schema}.results_default")
for _name in ("job_claim", "job_claim_one_queue"):
    TEMPLATES[f"{_name}_held"] = TEMPLATES[_name].replace(_OPEN, f"{_OPEN} {_HELD}")

PING = sql.SQL("SELECT 1")
# The pid of the server session (see db.connection.through_pooler).
BACKEND_PID = sql.SQL("SELECT pg_backend_pid()")

# Through a transaction pooler the same settings for one statement's transaction (see
# db.Dedicated): BEGIN_LOCAL(settings) + statement + END_LOCAL, sent as one simple query.
# The newline ends a comment the statement may end with.
END_LOCAL = b"\n;\nCOMMIT"


def begin_local(settings: dict[str, str]) -> sql.Composed:
    """``BEGIN; SET LOCAL name = 'value'; ...``: settings that end with the transaction."""
    sets = [sql.SQL("SET LOCAL {} = {}; ").format(sql.Identifier(name), sql.Literal(value))
            for name, value in settings.items()]
    return sql.Composed([sql.SQL("BEGIN; "), *sets])
# Settings of a worker's own sessions, all at once (see db.Dedicated).
SESSION_SETTINGS = sql.SQL(
    "SELECT set_config(name, value, false)"
    " FROM unnest(%(names)s::text[], %(values)s::text[]) AS s(name, value)")


def listen(channel: str) -> sql.Composed:
    """``LISTEN "channel"``; channel names are identifiers, so they are composed, not bound."""
    return sql.SQL("LISTEN {}").format(sql.Identifier(channel))


class Queries:
    """The named statements of :data:`TEMPLATES`, composed for one schema."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        ident = sql.Identifier(schema)
        # Kept as bytes: psycopg sends them as they are, with no re-composition per call.
        self._statements = {
            name: sql.SQL(text).format(schema=ident).as_bytes(None)
            for name, text in TEMPLATES.items()
        }
        self.jobs_channel = f"{schema}.jobs"
        self.done_channel = f"{schema}.done"
        self.control_channel = f"{schema}.control"
        self.replies_channel = f"{schema}.replies"
        self.events_channel = f"{schema}.events"
        self._windows: dict[tuple[str, datetime, datetime], bytes] = {}

    def __getitem__(self, name: str) -> bytes:
        return self._statements[name]

    def window(self, name: str, start: datetime, end: datetime) -> bytes:
        """The statement of :data:`WINDOWED` ``name`` reading the results that finished
        in [``start``, ``end``), two aware datetimes: bound as literals, so that the
        planner prunes by them. One text per window, kept for the next read (a handful
        of windows serve a day's reads; the oldest go past 256)."""
        key = (name, start, end)
        statement = self._windows.get(key)
        if statement is None:
            if start.tzinfo is None or end.tzinfo is None:
                raise ValueError("a window of results needs aware datetimes (UTC)")
            statement = sql.SQL(WINDOWED[name]).format(
                schema=sql.Identifier(self.schema), start=sql.Literal(start),
                end=sql.Literal(end)).as_bytes(None)
            if len(self._windows) >= 256:
                self._windows.pop(next(iter(self._windows)), None)
            self._windows[key] = statement
        return statement

    def channels(self) -> dict[str, str]:
        return {"jobs_channel": self.jobs_channel, "done_channel": self.done_channel,
                "control_channel": self.control_channel}


# -- roles (pgqueue.roles) -----------------------------------------------------------------
# The group roles of one schema and their grants, run by `pgqueue migrate` after the
# migrations (printed by `pgqueue migrate --roles`). Placeholders: {schema} and the four
# roles {producer} {worker} {control} {reader} as identifiers; {*_name} and {jobs_table}
# {results_table} as literals, for the DO blocks. Every statement is safe to run again.
ROLE_CREATE = """
DO $pgqueue$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {name}) THEN
        CREATE ROLE {role} NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object THEN NULL;  -- created meanwhile by another migrate
END $pgqueue$
"""
ROLE_GRANTS = (
    "GRANT USAGE ON SCHEMA {schema} TO {producer}, {worker}, {control}, {reader}",
    # producer: enqueue, read the state and outcome of a job, forget a result. Every
    # column but the arguments, which only the job's worker (and readers) may see.
    # Enqueueing reads id, queue, state and unique_key (RETURNING, ON CONFLICT).
    "GRANT INSERT ON {schema}.jobs TO {producer}",
    "GRANT DELETE ON {schema}.results TO {producer}",
    """
DO $pgqueue$ DECLARE t regclass; BEGIN
    FOREACH t IN ARRAY ARRAY[{jobs_table}, {results_table}]::regclass[] LOOP
        EXECUTE (SELECT format('GRANT SELECT (%s) ON %s TO %I',
                               string_agg(quote_ident(attname), ', ' ORDER BY attnum), t,
                               {producer_name})
                   FROM pg_attribute
                  WHERE attrelid = t AND attnum > 0 AND NOT attisdropped
                    AND attname NOT IN ('args', 'kwargs'));
    END LOOP;
END $pgqueue$
""",
    # worker (and beat): claim, heartbeat, finish, retry, rescue, prune, elect a leader,
    # fire schedules; read control requests.
    "GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.jobs, {schema}.results,"
    " {schema}.schedules, {schema}.workers, {schema}.leader TO {worker}",
    "GRANT SELECT ON {schema}.control_requests TO {worker}",
    # the statements that end jobs (worker, rescuer, revoke) bound their look-up of an
    # earlier result by id unless the id is noted here (0013)
    "GRANT SELECT ON {schema}.results_early TO {worker}, {control}",
    # the pruner deletes the notes of results gone (pgqueue.services.pruner)
    "GRANT DELETE ON {schema}.results_early TO {worker}",
    # the maintenance leader adds and drops the partitions of results (0010); only the
    # owner may, so through these functions, which run as their owner
    "GRANT EXECUTE ON FUNCTION {schema}.results_partition_add(date),"
    " {schema}.results_partition_prune(timestamptz, timestamptz, text) TO {worker}",
    # rows of days without a partition (plain SQL), which the pruner deletes row by row,
    # when results is partitioned (pgqueue migrate --partition-results)
    """
DO $pgqueue$ BEGIN
    IF to_regclass({results_default_table}) IS NOT NULL THEN
        EXECUTE format('GRANT SELECT, DELETE ON %s TO %I', {results_default_table},
                       {worker_name});
    END IF;
END $pgqueue$
""",
    # flow control: workers write the code's limits and move rates on as they claim
    "GRANT SELECT, INSERT, UPDATE ON {schema}.flow_limits TO {worker}",
    # workflows: a producer writes the steps that wait and reads groups; the statements
    # that end jobs (worker, rescuer, revoke by the control role) advance them.
    "GRANT INSERT ON {schema}.canvas_steps, {schema}.canvas_edges TO {producer}",
    "GRANT SELECT (id, task, root_id, parent_id, group_id, created_at)"
    " ON {schema}.canvas_steps TO {producer}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.canvas_groups TO {producer}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.canvas_steps, {schema}.canvas_edges,"
    " {schema}.canvas_groups TO {worker}, {control}",
    # a worker running a workflow's starter job (a periodic workflow) claims its start
    "GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.canvas_starts TO {worker}",
    "GRANT INSERT ON {schema}.control_replies TO {worker}",
    # control: revoke, abort, terminate, purge, manage schedules; write control requests
    # (and delete expired ones).
    "GRANT SELECT, INSERT, DELETE ON {schema}.jobs TO {control}",
    "GRANT UPDATE (options) ON {schema}.jobs TO {control}",
    "GRANT SELECT, INSERT, UPDATE ON {schema}.results TO {control}",
    # unique_for= and unique_states= (0008): producers and beat take claims, the pruner
    # deletes them; a retry by hand (control) moves a result back to jobs and keeps its
    # outcome in job_history.
    "GRANT SELECT, INSERT, UPDATE ON {schema}.unique_claims TO {producer}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.unique_claims TO {worker}",
    "GRANT DELETE ON {schema}.results TO {control}",
    "GRANT SELECT, INSERT ON {schema}.job_history TO {control}",
    "GRANT SELECT, DELETE ON {schema}.job_history TO {worker}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.schedules TO {control}",
    "GRANT SELECT, INSERT, DELETE ON {schema}.control_requests TO {control}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.flow_limits TO {control}",
    "GRANT SELECT, DELETE ON {schema}.control_replies TO {control}",
    # ... and which workers are alive, to know whose replies to wait for
    "GRANT SELECT ON {schema}.workers TO {control}",
    # events (0012): every role may run a receiver, which announces itself here, and
    # publishers (worker, producer's task-sent, control's task-revoked) read who listens.
    "GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.event_listeners"
    " TO {producer}, {worker}, {control}, {reader}",
    # reader: dashboards, `pgqueue inspect`, the Django admin.
    "GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {reader}",
)
# The (table, privilege) pairs of `tables`/`privileges` that the current role lacks.
ROLE_MISSING_PRIVILEGES = """
    SELECT t.name, t.privilege
      FROM unnest(%(tables)s::text[], %(privileges)s::text[]) AS t(name, privilege)
     WHERE NOT has_table_privilege(format('%%I.%%I', %(schema)s::text, t.name), t.privilege)
"""
