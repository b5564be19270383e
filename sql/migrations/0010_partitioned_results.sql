-- pgqueue schema, version 10: history that scales, opt-in (see "History that scales" in
-- docs/deploying.md). `results` stays a plain table with its primary key on id: every
-- finish probes one index. `pgqueue migrate --partition-results` (SELECT
-- results_partition()) converts it into a table partitioned by finish time, one partition
-- per UTC day, each day split by state: SUCCESS rows in <day>_success, every other state
-- in <day>_other (its DEFAULT). Retention is then per state (result_expires,
-- result_expires_failed), and expired history goes by dropping (or archiving) whole
-- tables, never by DELETE. The price: a look-up by id probes every partition's index.
--
-- A partitioned table cannot have a unique index without its partition key, so there
-- `id` is no primary key: every statement that ends a job deletes an earlier result of
-- the same id in the statement that inserts the new one (which works on both layouts),
-- and the jobs row's fencing (one DELETE of it wins) makes a job end exactly once.

-- The day of `day` (UTC) as a partition, with its two state partitions; false if it
-- exists or `results` is not
-- partitioned. Run by the maintenance leader for today and the days ahead. SECURITY DEFINER:
-- only the owner of `results` may add partitions, and the worker role may call this.
CREATE FUNCTION results_partition_add(day date) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT SET lock_timeout = '1s'
AS $add$
DECLARE
    part text := 'results_p' || to_char(day, 'YYYYMMDD');
    lo timestamptz := day::timestamp AT TIME ZONE 'UTC';
    hi timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = 'results'::regclass) <> 'p' THEN
        RETURN false;  -- not partitioned (the default): nothing to add
    END IF;
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

-- Converts `results` into the partitioned layout; false if it is partitioned already.
-- Run by `pgqueue migrate --partition-results` as the owner of `results` (not SECURITY
-- DEFINER: only whoever may migrate may convert). It holds an ACCESS EXCLUSIVE lock on
-- `results` while it copies the rows (about 30 s for 1,000,000). Views, triggers,
-- indexes and grants of the plain table are carried over as they are at the time, so
-- that later migrations need not know which layout they find.
CREATE FUNCTION results_partition() RETURNS boolean
LANGUAGE plpgsql SET search_path FROM CURRENT AS $convert$
DECLARE
    old regclass;
    views text[];
    view_names text[];
    triggers text[];
    indexes text[];
    grant_row record;
    statement text;
    i integer;
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = 'results'::regclass) = 'p' THEN
        RETURN false;
    END IF;
    LOCK TABLE results IN ACCESS EXCLUSIVE MODE;
    -- what hangs on the plain table, as SQL, before it is renamed
    SELECT array_agg(v.oid::regclass::text ORDER BY v.oid),
           array_agg(pg_get_viewdef(v.oid) ORDER BY v.oid)
      INTO view_names, views
      FROM pg_class v
     WHERE v.relkind = 'v' AND v.oid IN (
           SELECT r.ev_class FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
            WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = 'results'::regclass);
    SELECT array_agg(pg_get_triggerdef(oid) ORDER BY tgname) INTO triggers
      FROM pg_trigger WHERE tgrelid = 'results'::regclass AND NOT tgisinternal;
    SELECT array_agg(pg_get_indexdef(indexrelid) ORDER BY indexrelid) INTO indexes
      FROM pg_index WHERE indrelid = 'results'::regclass AND NOT indisprimary;

    ALTER TABLE results RENAME TO results_unpartitioned;
    old := 'results_unpartitioned'::regclass;
    CREATE TABLE results (LIKE results_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
        PARTITION BY RANGE (finished_at);
    -- Anything outside the days that have partitions (plain SQL writing an old finish
    -- time): an insert never fails. Adding a day moves that day's rows out of here.
    CREATE TABLE results_default PARTITION OF results DEFAULT;
    -- the same privileges; those on the whole table also on the DEFAULT partition, which
    -- the pruner reads and deletes from directly
    FOR grant_row IN
        SELECT a.privilege_type AS privilege, a.is_grantable,
               CASE a.grantee WHEN 0 THEN 'PUBLIC'
                    ELSE quote_ident(pg_get_userbyid(a.grantee)) END AS grantee
          FROM pg_class c, aclexplode(c.relacl) a
         WHERE c.oid = old AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON results, results_default TO %s%s', grant_row.privilege,
                       grant_row.grantee,
                       CASE WHEN grant_row.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
    FOR grant_row IN
        SELECT x.privilege_type AS privilege, quote_ident(a.attname) AS col,
               CASE x.grantee WHEN 0 THEN 'PUBLIC'
                    ELSE quote_ident(pg_get_userbyid(x.grantee)) END AS grantee
          FROM pg_attribute a, aclexplode(a.attacl) x
         WHERE a.attrelid = old AND a.attnum > 0 AND NOT a.attisdropped
           AND a.attacl IS NOT NULL
    LOOP
        EXECUTE format('GRANT %s (%s) ON results TO %s', grant_row.privilege, grant_row.col,
                       grant_row.grantee);
    END LOOP;

    -- the days that hold results, today and tomorrow; then the rows, then the indexes
    -- (built once per partition rather than row by row)
    PERFORM count(results_partition_add(day))
       FROM (SELECT DISTINCT (finished_at AT TIME ZONE 'UTC')::date AS day
               FROM results_unpartitioned
             UNION
             SELECT (now() AT TIME ZONE 'UTC')::date + n FROM generate_series(0, 1) AS n) days;
    INSERT INTO results SELECT * FROM results_unpartitioned;

    -- the views read the table by oid: point them at the new one
    FOR i IN 1 .. coalesce(array_length(views, 1), 0) LOOP
        EXECUTE format('CREATE OR REPLACE VIEW %s AS %s', view_names[i], views[i]);
    END LOOP;
    DROP TABLE results_unpartitioned;  -- with its indexes and triggers

    CREATE INDEX results_id_idx ON results (id);  -- in place of the primary key
    FOREACH statement IN ARRAY coalesce(indexes, '{}') LOOP
        EXECUTE statement;
    END LOOP;
    FOREACH statement IN ARRAY coalesce(triggers, '{}') LOOP
        EXECUTE statement;
    END LOOP;
    RETURN true;
END
$convert$;

-- Any role with USAGE on the schema could call these otherwise; `pgqueue migrate --roles`
-- grants EXECUTE on the first two to the worker role (the maintenance leader).
REVOKE EXECUTE ON FUNCTION results_partition_add(date) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION results_partition_prune(timestamptz, timestamptz, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION results_partition() FROM PUBLIC;
