-- pgqueue schema, version 13: look-ups of results by id that read only the days a result
-- of that id can be in. Partitioned by finish day (0010), `results` has no index on id
-- alone, and a look-up by id probes each partition: the more days of history, the
-- slower every finish (which deletes an earlier result of its id) and every
-- AsyncResult read. The ids pgqueue makes are UUIDv7 (pgqueue.utils.uuid7): they carry
-- the time they were made, and a job finishes after it was made. So a look-up by id is
-- bounded by `finished_at >= result_id_since(id)`, which the planner folds into a
-- constant for a given id and prunes the days before it.
--
-- That time comes from the clock of the producer, and any caller may give its own id
-- (a task_id that is a UUID, of any version, with any time in it). Two rules keep every
-- id correct: reads that find nothing bounded read again unbounded (pgqueue.result),
-- and a result that finished before its id's time, less an hour, has its id noted in
-- `results_early` (a trigger, whatever writes the row), where the statements that
-- replace an earlier result of an id look first: for those ids, and every id that is
-- not a UUIDv7 (custom task ids are uuid5), they probe every partition.
-- On a plain `results` (primary key on id) the bound costs nothing and prunes nothing.

-- The earliest finish time that a result of `id` has unless `results_early` holds the
-- id: the time of a UUIDv7, less an hour for clocks that disagree; -infinity for any
-- other id. IMMUTABLE, in integers only (no time zone), so that the planner folds it.
CREATE FUNCTION result_id_since(id uuid) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $since$
    SELECT CASE WHEN substr(id::text, 15, 1) = '7'
                THEN to_timestamp((('x' || translate(left(id::text, 13), '-', ''))::bit(48)
                                   ::bigint - 3600000) / 1000.0)
                ELSE '-infinity'::timestamptz END
$since$;

-- Ids with a result that finished before result_id_since(id) said: a producer's clock
-- ahead by more than an hour, or an id made up with a time to come. Tiny in practice.
CREATE TABLE results_early (
    id         uuid        PRIMARY KEY,
    noted_at   timestamptz NOT NULL DEFAULT now()
);

-- SECURITY DEFINER: every role that writes results notes ids here without a grant.
CREATE FUNCTION results_early_note() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $note$
BEGIN
    INSERT INTO results_early (id) VALUES (NEW.id) ON CONFLICT (id) DO NOTHING;
    RETURN NULL;
END
$note$;
REVOKE EXECUTE ON FUNCTION results_early_note() FROM PUBLIC;

-- The WHEN is evaluated without calling the function: a row that finished after its
-- id's time costs one comparison. Carried over by results_partition() (0010), and
-- cloned onto every partition.
CREATE TRIGGER results_early_note AFTER INSERT OR UPDATE OF id, finished_at ON results
    FOR EACH ROW WHEN (NEW.finished_at < result_id_since(NEW.id))
    EXECUTE FUNCTION results_early_note();

-- The results written before this version (one pass over the table).
INSERT INTO results_early (id)
SELECT DISTINCT id FROM results WHERE finished_at < result_id_since(id)
ON CONFLICT (id) DO NOTHING;
