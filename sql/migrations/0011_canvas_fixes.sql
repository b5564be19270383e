-- pgqueue schema, version 11: workflow fixes (issue 15). See docs/canvas.md.
--
-- 1. canvas_starts: the workflow a starter job sent (celery.chain, celery.group,
--    celery.chord, celery.chunks: what a periodic entry that is a workflow runs). The
--    starter writes its row in the transaction that sends the workflow; when the starter
--    runs again (its worker died after the send and the rescuer gave it back), the row
--    says the workflow exists already and which result it has: it is not sent twice.
--    A row is needed only while its starter job is live; later starts prune the others.
--    result_id is NULL only inside the starter's transaction, before the send.
CREATE TABLE canvas_starts (
    starter    uuid        PRIMARY KEY,
    result_id  text,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- 2. canvas_advance, as in 0006, but:
--    - a chord body whose member has no result row any more when the last member ends
--      (pruned by result_expires, forgotten) fails with a ChordError naming that member,
--      instead of receiving None in that member's place;
--    - no ON CONFLICT on results: nothing here needs a unique index on results.id.
--    The triggers canvas_advance_inserted/_updated on results call it by name.
CREATE OR REPLACE FUNCTION canvas_advance() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $canvas$
DECLARE
    touched uuid[];
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
