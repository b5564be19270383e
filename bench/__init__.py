"""The benchmark: pgqueue against Celery (Redis), Procrastinate and PgQueuer. See README.md."""
