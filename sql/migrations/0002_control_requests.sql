-- pgqueue schema, version 2: control requests are rows, not NOTIFY payloads.
-- Any role that can connect may NOTIFY any channel, so a notification cannot carry
-- authority. A request to stop a job (and, later, the remote-control commands) is a row
-- here, which only roles granted INSERT (the <schema>_control role) can write; the
-- NOTIFY on <schema>.control that follows only wakes the workers, which then read the
-- rows they have not handled yet (see pgqueue.control.ControlInbox).
CREATE TABLE control_requests (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- abort, terminate; unknown actions are logged and skipped by workers, so a newer
    -- producer can add actions without a migration
    action       text        NOT NULL,
    -- the jobs it is about (abort, terminate); empty for requests about workers
    job_ids      uuid[]      NOT NULL DEFAULT '{}',
    -- worker ids or node names that should act; NULL: every worker
    destination  text[],
    arguments    jsonb       NOT NULL DEFAULT '{}',
    -- the writing transaction: readers track what they have read by transaction, so a
    -- row that commits after a later-numbered one is still read (see ControlInbox)
    xid          xid8        NOT NULL DEFAULT pg_current_xact_id(),
    created_at   timestamptz NOT NULL DEFAULT now(),
    requested_by text        NOT NULL DEFAULT current_user
);

-- Workers read from their horizon on; old requests are deleted by the statements that
-- write new ones.
CREATE INDEX control_requests_xid_idx ON control_requests (xid);
CREATE INDEX control_requests_created_at_idx ON control_requests (created_at);
