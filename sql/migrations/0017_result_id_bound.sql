-- pgqueue schema, version 17: the earliest finish time a result of an id can have, for
-- the statements that look a result up by an id they read from a row rather than take
-- as a parameter: whether a unique claim still holds (the state of its job, in results
-- once the job ended) and the pruning of claims. That is result_id_since(id) (0013), or
-- -infinity when `results_early` notes the id (a result that finished before its id's
-- time), the rule the finishes' search for an earlier result follows: no result of the
-- id finishes before it, so a look-up bounded by it is exact and needs no second read.
-- STABLE, so that partitioned `results` is pruned by it as the statement runs (per
-- claim), where the look-up read every day's partition. SECURITY DEFINER: a producer
-- checks claims as it sends (job_insert_claimed) with no grant on `results_early`; all
-- it learns is whether a result of an id finished early.
CREATE FUNCTION result_id_bound(id uuid) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path FROM CURRENT AS $bound$
    SELECT CASE WHEN EXISTS (SELECT FROM results_early e WHERE e.id = $1)
                THEN '-infinity'::timestamptz
                ELSE result_id_since($1) END
$bound$;
