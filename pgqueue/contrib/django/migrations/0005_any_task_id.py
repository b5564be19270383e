"""pgqueue's SQL migration 0005 (any string is a task id), for projects migrated before it."""

from __future__ import annotations

import importlib

from django.db import migrations

_initial = importlib.import_module("pgqueue.contrib.django.migrations.0001_pgqueue_schema")


class Migration(migrations.Migration):
    dependencies = [("pgqueue", "0004_job_headers")]

    operations = [
        migrations.RunPython(_initial.apply_pgqueue_schema, migrations.RunPython.noop,
                             elidable=False),
    ]
