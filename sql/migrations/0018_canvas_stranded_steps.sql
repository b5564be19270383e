-- pgqueue schema, version 18: no workflow step waits for ever. See docs/canvas.md,
-- "Stranded steps".
--
-- A waiting step (canvas_steps) moves on only when the statement that moves one of its
-- predecessors into `results` fires canvas_advance. Two things could stop that for good:
--
-- 1. A predecessor that never reaches `results`: its jobs row deleted by plain SQL (before
--    or after it started: a started job's worker then finds its finish fenced off), a
--    step deleted, an id that never existed. The maintenance leader's canvas sweeper
--    (pgqueue.services.sweeper, statements canvas_step_scan, canvas_lost_end and
--    canvas_stranded_fail) finds those, and steps that wait for nothing any more, and
--    ends them through `results`: this trigger then stops what follows as for any
--    ending. Nothing here changes for that; the sweeper's statements are in queries.py.
--
-- 2. A step whose row cannot become a job (edited by plain SQL: `job` not an object, a
--    priority out of range, a queue missing, a countdown past the year 294276 ...). Its
--    release failed, and with it the statement that ended its predecessor: the worker's
--    finish, or the rescuer's whole batch, again at every try. Now the release runs in a
--    subtransaction; when it fails, the steps due are released one at a time, and each
--    that still fails ends FAILURE (MalformedJob, naming the step and the error), with
--    what follows it, as a failed step would. The rows it writes to `results` read the
--    step's queue, arguments and priority only where they are of the right type.
--    Only data errors (SQLSTATE classes 21, 22, 23) are caught: a deadlock, a lock
--    timeout or a cancel still fails the statement, to be retried whole.
--
-- 3. Both functions plan their statements once per session (plan_cache_mode =
--    force_generic_plan). Their parameters are arrays of step ids, for which Postgres
--    kept choosing custom plans: every call planned every statement anew, most of the
--    trigger's time. The plans are the same (primary key look-ups by `= ANY(ids)`; the
--    statements that read the transition table `finished` have no parameter, and were
--    generic already). Server CPU per finish statement (one job each, medians of 8
--    interleaved rounds of 1,500, load average 5-8 on 2 shared cores): a chain step
--    released, 1.12 ms with 0011's function, 0.69 ms with this one (0.02 ms of it the
--    subtransaction of 2.); a member of a chord of 1,500 counted, 0.95 ms and 0.63 ms.
--
-- canvas_advance is otherwise as in 0011; the triggers on results call it by name.

-- The steps ``steps`` (due to run) become jobs: deleted from canvas_steps, inserted into
-- jobs with their arguments (the predecessor's result, the header's results in order,
-- or the failed job's request, exception and traceback), the queues woken.
CREATE FUNCTION canvas_release(steps uuid[]) RETURNS void LANGUAGE plpgsql
SET search_path FROM CURRENT SET plan_cache_mode = force_generic_plan AS $release$
DECLARE
    sent bigint;
BEGIN
    WITH due AS (
        DELETE FROM canvas_steps s WHERE s.id = ANY(steps)
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
    )
    SELECT count(pg_notify(current_schema() || '.jobs', q.queue)) INTO sent
      FROM (SELECT DISTINCT queue FROM released WHERE state = 'queued') q;
END
$release$;

CREATE OR REPLACE FUNCTION canvas_advance() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT SET plan_cache_mode = force_generic_plan AS $canvas$
DECLARE
    touched uuid[];
    due uuid[];
    one uuid;
    -- steps due whose row could not become a job, and why
    broken uuid[] := '{}';
    broken_why text[] := '{}';
    sent bigint;
BEGIN
    -- Most finishes belong to no workflow: one probe, instead of a locking read and a
    -- DELETE, ends those (the trigger costs a plain drain 4-19 % of Postgres CPU without).
    IF NOT EXISTS (SELECT FROM canvas_edges e JOIN finished f ON e.before = f.id) THEN
        RETURN NULL;
    END IF;
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

    -- A chord body due to run whose member's result is gone (pruned by result_expires,
    -- forgotten) fails naming that member, rather than receiving None in its place.
    UPDATE canvas_steps s
       SET culprit = m.missing
      FROM (SELECT w.id, (SELECT o.id FROM unnest(w.after) WITH ORDINALITY AS o(id, n)
                           WHERE NOT EXISTS (SELECT 1 FROM results r WHERE r.id = o.id)
                           ORDER BY o.n LIMIT 1) AS missing
              FROM canvas_steps w
             WHERE w.id = ANY(touched) AND w.pass = 'list' AND w.runs_on = 'success'
               AND w.culprit IS NULL AND w.remaining <= 0) m
     WHERE s.id = m.id AND m.missing IS NOT NULL;

    -- The steps due: in one statement; should a row refuse, one at a time, and those that
    -- still refuse end below (MalformedJob).
    SELECT array_agg(s.id ORDER BY s.id) INTO due
      FROM canvas_steps s
     WHERE s.id = ANY(touched)
       AND ((s.runs_on = 'success' AND s.culprit IS NULL AND s.remaining <= 0)
         OR (s.runs_on = 'failure' AND s.culprit IS NOT NULL));
    IF due IS NOT NULL THEN
        BEGIN
            PERFORM canvas_release(due);
        EXCEPTION WHEN cardinality_violation OR data_exception
                    OR integrity_constraint_violation THEN
            FOREACH one IN ARRAY due LOOP
                BEGIN
                    PERFORM canvas_release(ARRAY[one]);
                EXCEPTION WHEN cardinality_violation OR data_exception
                            OR integrity_constraint_violation THEN
                    broken := broken || one;
                    broken_why := broken_why || ('workflow step ' || one
                        || ' could not become a job (its row in canvas_steps was edited?): '
                        || SQLERRM);
                END;
            END LOOP;
        END;
    END IF;
    -- link_error callbacks whose job succeeded never run
    DELETE FROM canvas_steps s
     WHERE s.id = ANY(touched)
       AND s.runs_on = 'failure' AND s.culprit IS NULL AND s.remaining <= 0;

    WITH RECURSIVE direct AS (
        SELECT s.id, s.pass, s.culprit, c.state AS culprit_state,
               CASE WHEN s.pass = 'list' THEN jsonb_build_object(
                        'exc_type', 'ChordError', 'exc_module', 'pgqueue.exceptions',
                        'exc_message', jsonb_build_array(
                            'Dependency ' || s.culprit || coalesce(
                                ' raised ' || coalesce(c.error, c.state),
                                ' has no result: it was deleted (result_expires, forget) '
                                || 'before the chord body ran')))
                    ELSE coalesce(c.result, jsonb_build_object(
                        'exc_type', 'TaskRevokedError', 'exc_module', 'pgqueue.exceptions',
                        'exc_message', jsonb_build_array(coalesce(c.error, 'revoked'))))
               END AS payload,
               CASE WHEN s.pass = 'list'
                    THEN 'ChordError: Dependency ' || s.culprit || coalesce(
                         ' raised ' || coalesce(c.error, c.state),
                         ' has no result: it was deleted (result_expires, forget) before the '
                         || 'chord body ran')
                    ELSE 'stopped: ' || coalesce(c.task, 'job') || ' ' || s.culprit
                         || ' ended ' || coalesce(c.state, 'with no result left')
                         || coalesce(' (' || c.error || ')', '')
               END AS why,
               CASE WHEN s.pass <> 'list' AND c.state = 'REVOKED'
                    THEN 'REVOKED' ELSE 'FAILURE' END AS final_state
          FROM canvas_steps s LEFT JOIN results c ON c.id = s.culprit
         WHERE s.id = ANY(touched) AND s.runs_on = 'success' AND s.culprit IS NOT NULL
        UNION ALL
        -- (a step's pass by a look-up each: a join may read all of canvas_steps)
        SELECT b.id, (SELECT s.pass FROM canvas_steps s WHERE s.id = b.id), NULL, NULL,
               jsonb_build_object('exc_type', 'MalformedJob',
                                  'exc_module', 'pgqueue.exceptions',
                                  'exc_message', jsonb_build_array(b.why)),
               'MalformedJob: ' || b.why, 'FAILURE'
          FROM unnest(broken, broken_why) AS b(id, why)
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
        -- a step's row read only where it holds the right types: any row can end
        INSERT INTO results AS r (id, queue, task, state, result, error, args, kwargs,
                                  priority, parent_id, root_id, group_id, created_at)
        SELECT g.id, coalesce(g.job ->> 'queue', 'default'), g.task, g.final_state,
               CASE WHEN g.final_state = 'FAILURE' THEN g.payload END, g.why,
               CASE WHEN jsonb_typeof(g.job -> 'args') = 'array' THEN g.job -> 'args'
                    ELSE '[]'::jsonb END,
               CASE WHEN jsonb_typeof(g.job -> 'kwargs') = 'object' THEN g.job -> 'kwargs'
                    ELSE '{}'::jsonb END,
               CASE WHEN jsonb_typeof(g.job -> 'priority') = 'number'
                         AND (g.job ->> 'priority')::numeric BETWEEN 0 AND 9
                    THEN round((g.job ->> 'priority')::numeric)::smallint ELSE 0 END,
               g.parent_id, g.root_id, g.group_id, g.created_at
          FROM gone g
         WHERE NOT EXISTS (SELECT 1 FROM results o WHERE o.id = g.id)
        RETURNING r.id
    )
    SELECT count(pg_notify(current_schema() || '.done', n.ids)) INTO sent
      FROM (SELECT string_agg(id::text, ',') AS ids
              FROM (SELECT id, (row_number() OVER ()) / 150 AS chunk FROM stored) x
             GROUP BY chunk) n;
    RETURN NULL;
END
$canvas$;
