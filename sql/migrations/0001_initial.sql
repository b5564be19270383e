-- pgqueue schema, version 1.
-- Applied by `pgqueue migrate` with search_path set to the target schema, so no table
-- name here is schema-qualified. Every state is text and every payload jsonb: a job
-- must stay readable with plain SQL.

-- Jobs that are not final yet. Finishing a job moves it to `results`, which keeps this
-- table (and its claim index) small however many jobs ran before.
CREATE TABLE jobs (
    id               uuid        PRIMARY KEY,
    queue            text        NOT NULL,
    task             text        NOT NULL,
    args             jsonb       NOT NULL DEFAULT '[]',
    kwargs           jsonb       NOT NULL DEFAULT '{}',
    -- scheduled: waits for run_at (eta/countdown); retry: waits for run_at after a failed
    -- attempt; queued: runnable now; started: claimed by `worker` until lease_expires_at.
    state            text        NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('scheduled', 'queued', 'started', 'retry')),
    priority         smallint    NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 9),
    run_at           timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz,
    attempt          integer     NOT NULL DEFAULT 0,
    max_retries      integer,
    lease_expires_at timestamptz,
    worker           text,
    unique_key       text,
    parent_id        uuid,
    root_id          uuid,
    group_id         uuid,
    ignore_result    boolean     NOT NULL DEFAULT false,
    -- set by update_state(): a custom state (e.g. PROGRESS) and its metadata
    progress_state   text,
    meta             jsonb,
    last_error       text,
    options          jsonb       NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    -- A worker owns a job exactly while it is started: statements that end an attempt are
    -- fenced on (id, attempt, worker) alone, which this makes imply state = 'started'.
    CHECK ((state = 'started') = (worker IS NOT NULL))
) WITH (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.01,
        autovacuum_vacuum_insert_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.02);

-- The claim index holds runnable rows only; future and running jobs stay out of it.
CREATE INDEX jobs_claim_idx ON jobs (queue, priority DESC, run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_due_idx ON jobs (run_at) WHERE state IN ('scheduled', 'retry');
CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at) WHERE state = 'started';
CREATE UNIQUE INDEX jobs_unique_key_idx ON jobs (unique_key) WHERE unique_key IS NOT NULL;

-- Final outcomes. A row arrives here in the same statement that deletes it from jobs.
CREATE TABLE results (
    id            uuid        PRIMARY KEY,
    queue         text        NOT NULL,
    task          text        NOT NULL,
    state         text        NOT NULL CHECK (state IN ('SUCCESS', 'FAILURE', 'REVOKED')),
    result        jsonb,
    error         text,
    traceback     text,
    args          jsonb       NOT NULL DEFAULT '[]',
    kwargs        jsonb       NOT NULL DEFAULT '{}',
    priority      smallint    NOT NULL DEFAULT 0,
    attempt       integer     NOT NULL DEFAULT 0,
    worker        text,
    unique_key    text,
    parent_id     uuid,
    root_id       uuid,
    group_id      uuid,
    meta          jsonb,
    created_at    timestamptz NOT NULL,
    started_at    timestamptz,
    finished_at   timestamptz NOT NULL DEFAULT now()
) WITH (autovacuum_vacuum_scale_factor = 0.02);

CREATE INDEX results_finished_at_idx ON results (finished_at);
-- Not unique: a unique_key guards live jobs; results keep it for look-ups only.
CREATE INDEX results_unique_key_idx ON results (unique_key) WHERE unique_key IS NOT NULL;

-- Periodic entries: from code (upserted when a scheduler starts) or from the database.
CREATE TABLE schedules (
    name            text        PRIMARY KEY,
    task            text        NOT NULL,
    args            jsonb       NOT NULL DEFAULT '[]',
    kwargs          jsonb       NOT NULL DEFAULT '{}',
    options         jsonb       NOT NULL DEFAULT '{}',
    cron            text,
    every           interval,
    timezone        text        NOT NULL DEFAULT 'UTC',
    enabled         boolean     NOT NULL DEFAULT true,
    catch_up        boolean     NOT NULL DEFAULT true,
    next_run_at     timestamptz,
    last_run_at     timestamptz,
    total_run_count bigint      NOT NULL DEFAULT 0,
    source          text        NOT NULL DEFAULT 'db' CHECK (source IN ('code', 'db')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((cron IS NULL) <> (every IS NULL))
);

CREATE INDEX schedules_due_idx ON schedules (next_run_at) WHERE enabled;

-- Live workers; nothing here needs to survive a crash of the server.
CREATE UNLOGGED TABLE workers (
    id           text        PRIMARY KEY,
    hostname     text        NOT NULL,
    pid          integer     NOT NULL,
    queues       text[]      NOT NULL,
    concurrency  integer     NOT NULL,
    pool         text        NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now()
);

-- The leader lease: one row. `term` grows by one at every change of holder and fences
-- the maintenance work of a deposed leader.
CREATE TABLE leader (
    id         smallint    PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    holder     text        NOT NULL,
    term       bigint      NOT NULL,
    elected_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

-- Every job, live or final, with one state vocabulary (Celery's).
CREATE VIEW all_jobs AS
SELECT id, queue, task,
       CASE state WHEN 'started' THEN 'STARTED'
                  WHEN 'retry' THEN 'RETRY'
                  ELSE CASE WHEN attempt > 0 THEN 'RETRY' ELSE 'PENDING' END END AS state,
       state AS job_state, priority, args, kwargs, NULL::jsonb AS result, last_error AS error,
       attempt, worker, run_at, created_at, started_at, NULL::timestamptz AS finished_at
  FROM jobs
UNION ALL
SELECT id, queue, task, state, state AS job_state, priority, args, kwargs, result, error,
       attempt, worker, NULL, created_at, started_at, finished_at
  FROM results;
