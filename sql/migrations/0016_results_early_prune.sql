-- pgqueue schema, version 16: `results_early` (0013) is pruned with the results it notes.
-- The pruner deletes a note whose id has no result any more (pgqueue.services.pruner,
-- "results_early_prune"). A result of that id written meanwhile, uncommitted when the
-- prune looked (a task id sent again), must keep its note: so a note written again is
-- a new version of its row (an update, where DO NOTHING left it as it was), and the
-- prune deletes only the version it read; a newer one it waited for stays.
CREATE OR REPLACE FUNCTION results_early_note() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $note$
BEGIN
    INSERT INTO results_early (id) VALUES (NEW.id)
    ON CONFLICT (id) DO UPDATE SET noted_at = EXCLUDED.noted_at;
    RETURN NULL;
END
$note$;
