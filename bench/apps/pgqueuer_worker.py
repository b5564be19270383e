"""``pgq run`` for the benchmark: ``python -m bench.apps.pgqueuer_worker --batch-size N``.

PgQueuer 1.6's ``pgq run`` fails to parse its own ``--log-level`` option under the typer
release pip resolves today, so this calls the same library entry point the CLI calls
(``pgqueuer.run``) on uvloop, as the CLI does.
"""

from __future__ import annotations

import argparse
import logging

import pgqueuer
import uvloop


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    uvloop.run(pgqueuer.run("bench.apps.pgqueuer_app:create", batch_size=args.batch_size))


if __name__ == "__main__":
    main()
