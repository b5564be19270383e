-- pgqueue schema, version 10: history that scales (see "History that scales" in
-- docs/deploying.md). `results` is partitioned by finish time, one partition per UTC day,
-- and each day by state: SUCCESS rows in <day>_success, every other state in <day>_other
-- (its DEFAULT). Retention is per state (result_expires, result_expires_failed), and
-- expired history goes by dropping (or archiving) whole tables, never by DELETE: a day's
-- successes can go while its failures stay, without moving a row.
--
-- A partitioned table cannot have a unique index without its partition key, so `id` is
-- no longer a primary key: every statement that ends a job deletes an earlier result of
-- the same id in the statement that inserts the new one, and the jobs row's fencing
-- (one DELETE of it wins) makes a job end exactly once. `id` keeps an index in every
-- partition, so a look-up by id is one index probe per partition.

ALTER TABLE results RENAME TO results_unpartitioned;
DROP TRIGGER canvas_advance_inserted ON results_unpartitioned;
DROP TRIGGER canvas_advance_updated ON results_unpartitioned;
ALTER INDEX results_pkey RENAME TO results_unpartitioned_pkey;
ALTER INDEX results_finished_at_idx RENAME TO results_unpartitioned_finished_at_idx;
ALTER INDEX results_unique_key_idx RENAME TO results_unpartitioned_unique_key_idx;
ALTER INDEX results_task_id_idx RENAME TO results_unpartitioned_task_id_idx;
ALTER INDEX results_parent_idx RENAME TO results_unpartitioned_parent_idx;
ALTER INDEX results_root_idx RENAME TO results_unpartitioned_root_idx;

CREATE TABLE results (LIKE results_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (finished_at);
-- Anything outside the days that have partitions (plain SQL writing an old finish time):
-- an insert never fails. Adding a day moves that day's rows out of here.
CREATE TABLE results_default PARTITION OF results DEFAULT;

-- The day of `day` (UTC) as a partition, with its two state partitions; false if it
-- exists. Run by the maintenance leader for today and the days ahead. SECURITY DEFINER:
-- only the owner of `results` may add partitions, and the worker role may call this.
CREATE FUNCTION results_partition_add(day date) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT SET lock_timeout = '1s'
AS $add$
DECLARE
    part text := 'results_p' || to_char(day, 'YYYYMMDD');
    lo timestamptz := day::timestamp AT TIME ZONE 'UTC';
    hi timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
BEGIN
    IF EXISTS (SELECT FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = 'results'::regclass AND c.relname = part) THEN
        RETURN false;
    END IF;
    -- Built apart and then attached: ATTACH takes a lock that lets reads and writes of
    -- `results` go on, where CREATE TABLE ... PARTITION OF would block them.
    EXECUTE format('CREATE TABLE %I (LIKE results INCLUDING DEFAULTS INCLUDING CONSTRAINTS)'
                   ' PARTITION BY LIST (state)', part);
    EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES IN (''SUCCESS'')'
                   ' WITH (autovacuum_vacuum_scale_factor = 0.02)', part || '_success', part);
    EXECUTE format('CREATE TABLE %I PARTITION OF %I DEFAULT'
                   ' WITH (autovacuum_vacuum_scale_factor = 0.02)', part || '_other', part);
    EXECUTE format('WITH moved AS (DELETE FROM results_default'
                   ' WHERE finished_at >= $1 AND finished_at < $2 RETURNING *)'
                   ' INSERT INTO %I SELECT * FROM moved', part) USING lo, hi;
    EXECUTE format('ALTER TABLE results ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   part, lo, hi);
    RETURN true;
END
$add$;

-- Drop (or, with `archive`, detach into that schema as plain tables) what is past
-- retention: a day's SUCCESS partition once the day ended before `success_before`, its
-- other partition once it ended before `other_before` (NULL: kept for ever). A day with
-- nothing left goes. The other partition is the day's DEFAULT: while the day's successes
-- stay it is emptied (TRUNCATE) rather than dropped, so that no late row has nowhere to
-- go. Returns what went, with the planner's estimate of its rows.
CREATE FUNCTION results_partition_prune(success_before timestamptz, other_before timestamptz,
                                        archive text)
RETURNS TABLE (partition text, approx_rows bigint, archived boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT SET lock_timeout = '1s'
AS $prune$
DECLARE
    d record;
    leaf record;
    success_gone boolean;
    other_gone boolean;
    has_rows boolean;
BEGIN
    IF archive IS NOT NULL AND to_regnamespace(quote_ident(archive)) IS NULL THEN
        RAISE EXCEPTION 'result_archive_schema %: no such schema; create it (owned by, or '
                        'writable by, the owner of results) or unset the setting', archive
              USING ERRCODE = 'invalid_schema_name';
    END IF;
    FOR d IN
        SELECT c.oid::regclass AS rel, b[1]::timestamptz AS lo, b[2]::timestamptz AS hi
          FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid,
               regexp_match(pg_get_expr(c.relpartbound, c.oid),
                            $re$FROM \('([^']+)'\) TO \('([^']+)'\)$re$) AS b
         WHERE i.inhparent = 'results'::regclass AND c.relkind = 'p'
         ORDER BY 2
    LOOP
        success_gone := d.hi <= success_before;
        other_gone := d.hi <= other_before;
        CONTINUE WHEN NOT coalesce(success_gone OR other_gone, false);
        FOR leaf IN
            SELECT c.oid::regclass AS rel, c.relname::text AS name,
                   pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT' AS is_other,
                   greatest(c.reltuples, 0)::bigint AS approx
              FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = d.rel
        LOOP
            CONTINUE WHEN NOT coalesce(CASE WHEN leaf.is_other THEN other_gone
                                            ELSE success_gone END, false);
            IF leaf.is_other AND NOT coalesce(success_gone, false) THEN
                EXECUTE format('SELECT EXISTS (SELECT FROM %s)', leaf.rel) INTO has_rows;
                CONTINUE WHEN NOT has_rows;
                IF archive IS NOT NULL THEN
                    EXECUTE format('ALTER TABLE %s DETACH PARTITION %s', d.rel, leaf.rel);
                    EXECUTE format('ALTER TABLE %s SET SCHEMA %I', leaf.rel, archive);
                    EXECUTE format('CREATE TABLE %I PARTITION OF %s DEFAULT'
                                   ' WITH (autovacuum_vacuum_scale_factor = 0.02)',
                                   leaf.name, d.rel);
                ELSE
                    EXECUTE format('TRUNCATE %s', leaf.rel);
                END IF;
            ELSIF archive IS NOT NULL THEN
                EXECUTE format('ALTER TABLE %s DETACH PARTITION %s', d.rel, leaf.rel);
                EXECUTE format('ALTER TABLE %s SET SCHEMA %I', leaf.rel, archive);
            ELSE
                EXECUTE format('DROP TABLE %s', leaf.rel);
            END IF;
            partition := leaf.name;
            approx_rows := leaf.approx;
            archived := archive IS NOT NULL;
            RETURN NEXT;
        END LOOP;
        IF coalesce(success_gone AND other_gone, false) THEN
            EXECUTE format('DROP TABLE %s', d.rel);
        END IF;
    END LOOP;
END
$prune$;

-- Any role with USAGE on the schema could call these otherwise; `pgqueue migrate --roles`
-- grants EXECUTE to the worker role (the maintenance leader).
REVOKE EXECUTE ON FUNCTION results_partition_add(date) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION results_partition_prune(timestamptz, timestamptz, text) FROM PUBLIC;

-- The days that hold results, today and tomorrow, then the rows, then the indexes (built
-- once per partition rather than row by row).
SELECT count(results_partition_add(day))
  FROM (SELECT DISTINCT (finished_at AT TIME ZONE 'UTC')::date AS day
          FROM results_unpartitioned
        UNION
        SELECT (now() AT TIME ZONE 'UTC')::date + n FROM generate_series(0, 1) AS n) days;
INSERT INTO results SELECT * FROM results_unpartitioned;

CREATE INDEX results_id_idx ON results (id);
CREATE INDEX results_finished_at_idx ON results (finished_at);
CREATE INDEX results_unique_key_idx ON results (unique_key) WHERE unique_key IS NOT NULL;
CREATE INDEX results_task_id_idx ON results (task_id) WHERE task_id IS NOT NULL;
CREATE INDEX results_parent_idx ON results (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX results_root_idx ON results (root_id) WHERE root_id IS NOT NULL;

-- The views read the table by oid: point them at the new one.
CREATE OR REPLACE VIEW all_jobs AS
SELECT id, queue, task,
       CASE state WHEN 'started' THEN 'STARTED'
                  WHEN 'retry' THEN 'RETRY'
                  ELSE CASE WHEN attempt > 0 THEN 'RETRY' ELSE 'PENDING' END END AS state,
       state AS job_state, priority, args, kwargs, NULL::jsonb AS result, last_error AS error,
       attempt, worker, run_at, created_at, started_at, NULL::timestamptz AS finished_at,
       coalesce(task_id, id::text) AS task_id
  FROM jobs
UNION ALL
SELECT id, queue, task, state, state AS job_state, priority, args, kwargs, result, error,
       attempt, worker, NULL, created_at, started_at, finished_at,
       coalesce(task_id, id::text)
  FROM results;

CREATE OR REPLACE VIEW workflow_steps AS
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

-- canvas_advance stores the rows of failed workflow steps with ON CONFLICT (id), which
-- needs a unique index on id. The step's row was just deleted from canvas_steps (exactly
-- once), so nothing can conflict: the same body without the arbiter. A later migration
-- that replaces canvas_advance must not name one either.
DO $fix$
DECLARE
    body text := pg_get_functiondef('canvas_advance()'::regprocedure);
BEGIN
    IF position('ON CONFLICT (id) DO NOTHING' IN body) > 0 THEN
        EXECUTE replace(body, 'ON CONFLICT (id) DO NOTHING', 'ON CONFLICT DO NOTHING');
    END IF;
END
$fix$;

CREATE TRIGGER canvas_advance_inserted AFTER INSERT ON results
    REFERENCING NEW TABLE AS finished FOR EACH STATEMENT EXECUTE FUNCTION canvas_advance();
CREATE TRIGGER canvas_advance_updated AFTER UPDATE ON results
    REFERENCING NEW TABLE AS finished FOR EACH STATEMENT EXECUTE FUNCTION canvas_advance();

DROP TABLE results_unpartitioned;
