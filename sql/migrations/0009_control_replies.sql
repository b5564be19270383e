-- pgqueue schema, version 9: workers' replies to control requests (pgqueue inspect,
-- pgqueue control, app.control). A request (control_requests) that asks for replies is
-- answered by each worker it addresses with one row here; the caller LISTENs on
-- <schema>.replies, whose NOTIFY only wakes it, and reads the rows of its request.
-- Workers may only INSERT here; the <schema>_control role reads the rows and deletes old
-- ones when it writes new requests. Nothing here must survive a crash of the server.
CREATE UNLOGGED TABLE control_replies (
    request_id  bigint      NOT NULL,
    -- the worker's id (workers.id) and its node name (`-n`), the key of a reply
    worker      text        NOT NULL,
    node        text        NOT NULL,
    -- Celery's reply shape: {"ok": ...}, {"error": "..."} or the answer itself
    reply       jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (request_id, worker)
);

CREATE INDEX control_replies_created_at_idx ON control_replies (created_at);
