"""Everything that talks to PostgreSQL: connections (re-exported here), the named
queries, migrations, the LISTEN connection and the embedded server.

``from pgqueue import db`` then ``db.connect(...)`` is how the rest of the package opens a
connection; :mod:`pgqueue.db.connection` holds the code.
"""

from pgqueue.db.connection import (
    CONNECT_TIMEOUT,
    SCHEMA_ERRORS,
    Dedicated,
    Outage,
    application_name,
    connect,
    declare_pooling,
    describe,
    is_connection_error,
    missing_schema,
    one_line,
    prepare_threshold,
    run,
    set_synchronous_commit_off,
    through_pooler,
    translate_errors,
)

__all__ = ["CONNECT_TIMEOUT", "SCHEMA_ERRORS", "Dedicated", "Outage", "application_name",
           "connect", "declare_pooling", "describe", "is_connection_error", "missing_schema",
           "one_line", "prepare_threshold", "run", "set_synchronous_commit_off",
           "through_pooler", "translate_errors"]
