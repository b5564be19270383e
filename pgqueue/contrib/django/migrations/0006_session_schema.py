"""pgqueue's SQL migrations 0006 and later (workflows, flow control, unique periods, retry
by hand, control replies), for projects migrated before them: each run applies every SQL
migration the installed pgqueue has and the database lacks."""

from __future__ import annotations

import importlib

from django.db import migrations

_initial = importlib.import_module("pgqueue.contrib.django.migrations.0001_pgqueue_schema")


class Migration(migrations.Migration):
    dependencies = [("pgqueue", "0005_any_task_id")]

    operations = [
        migrations.RunPython(_initial.apply_pgqueue_schema, migrations.RunPython.noop,
                             elidable=False),
    ]
