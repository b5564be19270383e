-- pgqueue schema, version 8: unique jobs with periods and scopes, and the history that a
-- retry by hand keeps.

-- A claim on a unique_key sent with unique_for= or unique_states= (see
-- docs/unique-and-retry.md). One row per key: the job that holds it, until when
-- (expires_at; NULL: no period) and while that job is in which states (states; NULL: in
-- any state, even once its row is gone). A send takes the key with an upsert in the
-- statement that inserts its job, so two producers racing on one key are ordered by
-- the row lock of this table: exactly one job is accepted.
CREATE TABLE unique_claims (
    key        text        PRIMARY KEY,
    job_id     uuid        NOT NULL,
    -- scheduled, queued, retry, started (jobs.state), success, failure, revoked
    -- (results.state in lower case)
    states     text[],
    expires_at timestamptz,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    -- the transaction that took the claim: a send whose snapshot cannot see it (a
    -- producer racing at the same instant) looks again rather than miss its holder
    xid        xid8        NOT NULL DEFAULT pg_current_xact_id()
);

CREATE INDEX unique_claims_expires_at_idx ON unique_claims (expires_at)
    WHERE expires_at IS NOT NULL;

-- The final outcomes that a retry by hand (AsyncResult.retry(), app.retry(),
-- `pgqueue retry`) replaced: the job goes back to `jobs` under the same id, and what its
-- last attempt ended with stays readable here.
CREATE TABLE job_history (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      uuid        NOT NULL,
    task        text        NOT NULL,
    state       text        NOT NULL,
    attempt     integer     NOT NULL,
    error       text,
    traceback   text,
    result      jsonb,
    worker      text,
    started_at  timestamptz,
    finished_at timestamptz NOT NULL,
    retried_at  timestamptz NOT NULL DEFAULT now(),
    retried_by  text        NOT NULL DEFAULT current_user
);

CREATE INDEX job_history_job_id_idx ON job_history (job_id);
CREATE INDEX job_history_retried_at_idx ON job_history (retried_at);
