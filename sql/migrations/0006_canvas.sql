-- pgqueue schema, version 6: workflows (chain, group, chord, link, link_error) in the
-- database. A workflow is sent in one transaction: the jobs that can run at once go to
-- `jobs`; every other step waits in `canvas_steps` with the ids it waits for. Whatever
-- moves a job into `results` (a worker's finish, the rescuer, a revoke, plain SQL) fires
-- `canvas_advance`, which in that same transaction releases, fails or discards the steps
-- waiting for it. No process polls a workflow. See docs/canvas.md.

-- A step that waits: a chain's next step, a chord's body, a link or link_error callback.
-- `job` is the job row it becomes (queue, task, args, kwargs, priority, options,
-- countdown and expires_in relative to its release, ...), `after` the ids it waits for in
-- order (a chord body receives their results in that order).
CREATE TABLE canvas_steps (
    id          uuid        PRIMARY KEY,
    task        text        NOT NULL,
    root_id     uuid,
    parent_id   uuid,
    group_id    uuid,
    job         jsonb       NOT NULL,
    after       uuid[]      NOT NULL,
    -- of `after`, how many have not succeeded yet
    remaining   integer     NOT NULL,
    -- success: runs when all of `after` succeeded; failure: a link_error callback, runs
    -- when its one predecessor ends FAILURE or REVOKED
    runs_on     text        NOT NULL CHECK (runs_on IN ('success', 'failure')),
    -- what the step receives before its own arguments: one: the predecessor's result;
    -- list: the results of `after`, in order; none: nothing (immutable, .si());
    -- error: (request, exception, traceback) of the failed predecessor
    pass        text        NOT NULL CHECK (pass IN ('one', 'list', 'none', 'error')),
    -- the first of `after` that did not succeed
    culprit     uuid,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX canvas_steps_root_idx ON canvas_steps (root_id);

-- Who waits for whom: one row per (predecessor, waiting step), consumed (deleted) in the
-- transaction that moves the predecessor into results, so it counts exactly once.
CREATE TABLE canvas_edges (
    before uuid NOT NULL,
    step   uuid NOT NULL,
    PRIMARY KEY (before, step)
);

-- The members of a group, in order: GroupResult.save()/restore(), chord headers.
CREATE TABLE canvas_groups (
    id         uuid        PRIMARY KEY,
    members    uuid[]      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- AsyncResult.children and the workflow view look jobs up by parent and root.
CREATE INDEX jobs_parent_idx ON jobs (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX results_parent_idx ON results (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX jobs_root_idx ON jobs (root_id) WHERE root_id IS NOT NULL;
CREATE INDEX results_root_idx ON results (root_id) WHERE root_id IS NOT NULL;

-- What follows from jobs that just reached `results` (the statement's new rows).
-- 1. Lock the waiting steps concerned, in id order (two finishers of members of the same
--    chords never deadlock), then consume the edges and count the successes under those
--    locks: members finishing at once on different workers queue on the step's row.
-- 2. A new statement, so a new snapshot: every member counted before this one is
--    committed and visible. Release the steps that are due into `jobs` (DELETE ...
--    RETURNING: exactly once), discard the link_error steps whose predecessor succeeded.
-- 3. Fail the steps that can no longer run, and every step after them: FAILURE with the
--    failed step's exception (a chord body: ChordError naming the failed member), or
--    REVOKED when it was revoked. Their rows in `results` fire this trigger once more,
--    which releases the link_error callbacks of a failed chord body.
CREATE FUNCTION canvas_advance() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $canvas$
DECLARE
    touched uuid[];
    sent bigint;
BEGIN
    PERFORM 1 FROM canvas_steps s
      WHERE s.id IN (SELECT e.step FROM canvas_edges e JOIN finished f ON e.before = f.id)
      ORDER BY s.id FOR UPDATE;
    WITH consumed AS (
        DELETE FROM canvas_edges e USING finished f
         WHERE e.before = f.id
        RETURNING e.step, f.id, f.state
    ), per_step AS (
        SELECT step, count(*) FILTER (WHERE state = 'SUCCESS') AS ok,
               (array_agg(id) FILTER (WHERE state <> 'SUCCESS'))[1] AS culprit
          FROM consumed GROUP BY step
    ), counted AS (
        UPDATE canvas_steps s
           SET remaining = s.remaining - p.ok, culprit = coalesce(s.culprit, p.culprit)
          FROM per_step p WHERE s.id = p.step
        RETURNING s.id
    )
    SELECT array_agg(id) INTO touched FROM counted;
    IF touched IS NULL THEN
        RETURN NULL;
    END IF;

    WITH due AS (
        DELETE FROM canvas_steps s
         WHERE s.id = ANY(touched)
           AND ((s.runs_on = 'success' AND s.culprit IS NULL AND s.remaining <= 0)
             OR (s.runs_on = 'failure' AND s.culprit IS NOT NULL))
        RETURNING s.*
    ), released AS (
        INSERT INTO jobs AS j (id, queue, task, args, kwargs, state, priority, run_at,
                               expires_at, max_retries, parent_id, root_id, group_id,
                               ignore_result, options, headers)
        SELECT d.id, t.queue, d.task,
               CASE d.pass
                   WHEN 'none' THEN t.args
                   WHEN 'one' THEN jsonb_build_array(
                       (SELECT r.result FROM results r WHERE r.id = d.after[1])) || t.args
                   WHEN 'list' THEN jsonb_build_array(coalesce(
                       (SELECT jsonb_agg(r.result ORDER BY o.n)
                          FROM unnest(d.after) WITH ORDINALITY AS o(id, n)
                          LEFT JOIN results r ON r.id = o.id), '[]'::jsonb)) || t.args
                   ELSE coalesce((
                       SELECT jsonb_build_array(
                           jsonb_build_object(
                               'id', c.id, 'task', c.task, 'args', c.args,
                               'kwargs', c.kwargs, 'retries', greatest(c.attempt - 1, 0),
                               'parent_id', c.parent_id, 'root_id', c.root_id,
                               'group', c.group_id, 'worker', c.worker,
                               'state', c.state),
                           coalesce(c.result, jsonb_build_object(
                               'exc_type', 'TaskRevokedError',
                               'exc_module', 'pgqueue.exceptions',
                               'exc_message', jsonb_build_array(coalesce(c.error, 'revoked')))),
                           c.traceback)
                         FROM results c WHERE c.id = d.culprit), '[]'::jsonb) || t.args
               END,
               t.kwargs,
               CASE WHEN coalesce(t.eta, now() + make_interval(secs => coalesce(t.countdown, 0)))
                         > now() THEN 'scheduled' ELSE 'queued' END,
               t.priority,
               coalesce(t.eta, now() + make_interval(secs => coalesce(t.countdown, 0))),
               coalesce(t.expires_at, now() + make_interval(secs => t.expires_in)),
               t.max_retries, d.parent_id, d.root_id, d.group_id,
               coalesce(t.ignore_result, false), coalesce(t.options, '{}'::jsonb), t.headers
          FROM due d,
               jsonb_to_record(d.job) AS t(queue text, args jsonb, kwargs jsonb,
                                           priority smallint, eta timestamptz,
                                           countdown float8, expires_at timestamptz,
                                           expires_in float8, max_retries integer,
                                           ignore_result boolean, options jsonb,
                                           headers jsonb)
        ON CONFLICT DO NOTHING
        RETURNING j.queue, j.state
    ), discarded AS (
        DELETE FROM canvas_steps s
         WHERE s.id = ANY(touched)
           AND s.runs_on = 'failure' AND s.culprit IS NULL AND s.remaining <= 0
    )
    SELECT count(pg_notify(current_schema() || '.jobs', q.queue)) INTO sent
      FROM (SELECT DISTINCT queue FROM released WHERE state = 'queued') q;

    WITH RECURSIVE direct AS (
        SELECT s.id, s.pass, s.culprit, c.state AS culprit_state,
               CASE WHEN s.pass = 'list' THEN jsonb_build_object(
                        'exc_type', 'ChordError', 'exc_module', 'pgqueue.exceptions',
                        'exc_message', jsonb_build_array(
                            'Dependency ' || c.id || ' raised '
                            || coalesce(c.error, c.state)))
                    ELSE coalesce(c.result, jsonb_build_object(
                        'exc_type', 'TaskRevokedError', 'exc_module', 'pgqueue.exceptions',
                        'exc_message', jsonb_build_array(coalesce(c.error, 'revoked'))))
               END AS payload,
               CASE WHEN s.pass = 'list'
                    THEN 'ChordError: Dependency ' || c.id || ' raised '
                         || coalesce(c.error, c.state)
                    ELSE 'stopped: ' || c.task || ' ' || c.id || ' ended ' || c.state
                         || coalesce(' (' || c.error || ')', '')
               END AS why,
               CASE WHEN s.pass <> 'list' AND c.state = 'REVOKED'
                    THEN 'REVOKED' ELSE 'FAILURE' END AS final_state
          FROM canvas_steps s JOIN results c ON c.id = s.culprit
         WHERE s.id = ANY(touched) AND s.runs_on = 'success' AND s.culprit IS NOT NULL
    ), doom(id, via, chord) AS (
        SELECT id, id, pass = 'list' FROM direct
        UNION
        SELECT e.step, d.via, false
          FROM doom d JOIN canvas_edges e ON e.before = d.id
          JOIN canvas_steps s ON s.id = e.step AND s.runs_on = 'success'
    ), errbacks AS (
        -- link_error callbacks of doomed chain steps never run (as in Celery, where those
        -- steps are never sent); a doomed chord body's do, when its row is stored below
        DELETE FROM canvas_steps s USING canvas_edges e, doom d
         WHERE e.before = d.id AND e.step = s.id AND s.runs_on = 'failure' AND NOT d.chord
    ), gone AS (
        DELETE FROM canvas_steps s USING doom d, direct x
         WHERE s.id = d.id AND x.id = d.via
        RETURNING s.*, x.payload, x.why, x.final_state
    ), stored AS (
        INSERT INTO results AS r (id, queue, task, state, result, error, args, kwargs,
                                  priority, parent_id, root_id, group_id, created_at)
        SELECT g.id, g.job ->> 'queue', g.task, g.final_state,
               CASE WHEN g.final_state = 'FAILURE' THEN g.payload END, g.why,
               coalesce(g.job -> 'args', '[]'::jsonb), coalesce(g.job -> 'kwargs', '{}'::jsonb),
               coalesce((g.job ->> 'priority')::smallint, 0), g.parent_id, g.root_id,
               g.group_id, g.created_at
          FROM gone g
        ON CONFLICT (id) DO NOTHING
        RETURNING r.id
    )
    SELECT count(pg_notify(current_schema() || '.done', n.ids)) INTO sent
      FROM (SELECT string_agg(id::text, ',') AS ids
              FROM (SELECT id, (row_number() OVER ()) / 150 AS chunk FROM stored) x
             GROUP BY chunk) n;
    RETURN NULL;
END
$canvas$;

CREATE TRIGGER canvas_advance_inserted AFTER INSERT ON results
    REFERENCING NEW TABLE AS finished FOR EACH STATEMENT EXECUTE FUNCTION canvas_advance();
CREATE TRIGGER canvas_advance_updated AFTER UPDATE ON results
    REFERENCING NEW TABLE AS finished FOR EACH STATEMENT EXECUTE FUNCTION canvas_advance();

-- Every step of the workflow that starts with job :root (its root_id), in plain SQL:
--   SELECT * FROM workflow_steps WHERE root_id = '...' ORDER BY created_at;
-- state is Celery's (PENDING for steps still waiting for others, job_state 'waiting').
CREATE VIEW workflow_steps AS
SELECT root_id, id, task, parent_id, group_id, state, job_state, result, error,
       created_at, finished_at
  FROM (SELECT root_id, id, task, parent_id, group_id,
               CASE state WHEN 'started' THEN 'STARTED' WHEN 'retry' THEN 'RETRY'
                          ELSE 'PENDING' END AS state,
               state AS job_state, NULL::jsonb AS result, last_error AS error, created_at,
               NULL::timestamptz AS finished_at
          FROM jobs
        UNION ALL
        SELECT root_id, id, task, parent_id, group_id, state, state, result, error,
               created_at, finished_at
          FROM results
        UNION ALL
        SELECT root_id, id, task, parent_id, group_id, 'PENDING', 'waiting', NULL, NULL,
               created_at, NULL
          FROM canvas_steps) steps;
