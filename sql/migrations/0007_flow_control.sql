-- pgqueue schema, version 7: flow control for the whole fleet (see docs/flow-control.md).
-- A limit on a queue or a task is a row here, read by every worker at most a second
-- after it changes (and at once after the NOTIFY that follows a change), so that every
-- claim of every worker honours the same numbers. Workers claim the jobs of a limited
-- queue or task in a short transaction that first locks these rows: two workers
-- claiming at once take turns, and each counts what the other started.
CREATE TABLE flow_limits (
    scope         text        NOT NULL CHECK (scope IN ('queue', 'task')),
    name          text        NOT NULL,
    -- a paused queue starts no job; its running jobs finish (queues only)
    paused        boolean     NOT NULL DEFAULT false,
    -- at most this many jobs of the queue started at once, fleet-wide (queues only)
    concurrency   integer     CHECK (concurrency >= 1),
    -- at most rate_count starts per rate_seconds, fleet-wide
    rate_count    float8      CHECK (rate_count > 0 AND rate_count <= 1e9),
    rate_seconds  float8      CHECK (rate_seconds > 0 AND rate_seconds <= 86400),
    -- the rate's state: when the next start is allowed (claims move it on)
    next_start_at timestamptz NOT NULL DEFAULT '-infinity',
    -- code: written by workers from @task(rate_limit=...) and the settings; control:
    -- set at run time, which the code's values never overwrite
    source        text        NOT NULL DEFAULT 'control' CHECK (source IN ('code', 'control')),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, name),
    CHECK ((rate_count IS NULL) = (rate_seconds IS NULL)),
    CHECK (scope = 'queue' OR (concurrency IS NULL AND NOT paused))
);

-- apply_async(concurrency_key=...): at most options.concurrency_limit started jobs share
-- the key. A column of its own (kept from options) so that claims and counts find
-- keyed jobs through small indexes of keyed rows only.
ALTER TABLE jobs ADD COLUMN concurrency_key text
    GENERATED ALWAYS AS (options ->> 'concurrency_key') STORED;
CREATE INDEX jobs_keyed_claim_idx ON jobs (queue, priority DESC, run_at, id)
    WHERE state = 'queued' AND concurrency_key IS NOT NULL;
CREATE INDEX jobs_keyed_started_idx ON jobs (concurrency_key)
    WHERE state = 'started' AND concurrency_key IS NOT NULL;
