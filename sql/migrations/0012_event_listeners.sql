-- pgqueue schema, version 12: who listens for events. Postgres cannot tell who LISTENs on
-- a channel, so each receiver (`pgqueue events`, app.events.Receiver) keeps one row here,
-- its seen_at refreshed every few seconds while it listens and deleted when it stops.
-- Workers and producers publish events only while a row is fresh (pgqueue.events):
-- nobody listening, -E costs almost nothing. A receiver that died without cleanup stops
-- counting once its row is older than the freshness window. Nothing here must survive a
-- crash of the server.
CREATE UNLOGGED TABLE event_listeners (
    id          text        PRIMARY KEY,
    -- who listens (pid@host), for people reading the table
    node        text        NOT NULL DEFAULT '',
    seen_at     timestamptz NOT NULL DEFAULT now()
);
