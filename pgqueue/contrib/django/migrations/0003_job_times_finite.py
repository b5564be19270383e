"""pgqueue's SQL migration 0003 (finite job times), for projects migrated before it."""

from __future__ import annotations

import importlib

from django.db import migrations

_initial = importlib.import_module("pgqueue.contrib.django.migrations.0001_pgqueue_schema")


class Migration(migrations.Migration):
    dependencies = [("pgqueue", "0002_control_requests")]

    operations = [
        migrations.RunPython(_initial.apply_pgqueue_schema, migrations.RunPython.noop,
                             elidable=False),
    ]
