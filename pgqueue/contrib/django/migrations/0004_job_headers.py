"""pgqueue's SQL migration 0004 (job headers), for projects migrated before it."""

from __future__ import annotations

import importlib

from django.db import migrations

_initial = importlib.import_module("pgqueue.contrib.django.migrations.0001_pgqueue_schema")


class Migration(migrations.Migration):
    dependencies = [("pgqueue", "0003_job_times_finite")]

    operations = [
        migrations.RunPython(_initial.apply_pgqueue_schema, migrations.RunPython.noop,
                             elidable=False),
    ]
