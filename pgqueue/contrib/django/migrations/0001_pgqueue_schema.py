"""pgqueue's tables, created by ``manage.py migrate`` (same as ``manage.py pgqueue migrate``).

The tables come from pgqueue's own SQL migrations, applied under pgqueue's advisory lock
on a connection of their own: re-running is a no-op, and a later pgqueue release that
ships SQL migrations adds a Django migration calling :func:`apply_pgqueue_schema` again.
The models are unmanaged: Django records them here but never changes their tables.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models

from pgqueue.contrib.django.conf import dsn_for_database, get_app
from pgqueue.contrib.django.models import table


def apply_pgqueue_schema(apps: Any, schema_editor: Any) -> None:
    from pgqueue.db import migrations as pgqueue_migrations

    alias = schema_editor.connection.alias
    pgqueue_migrations.migrate(dsn_for_database(alias), get_app().schema)


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []

    operations = [
        # Unapplying leaves the tables and their jobs alone; drop the schema by hand.
        migrations.RunPython(apply_pgqueue_schema, migrations.RunPython.noop, elidable=False),
        migrations.CreateModel(
            name="Job",
            fields=[
                ("id", models.UUIDField(primary_key=True, serialize=False)),
                ("queue", models.TextField()),
                ("task", models.TextField()),
                ("args", models.JSONField(default=list)),
                ("kwargs", models.JSONField(default=dict)),
                ("state", models.TextField()),
                ("priority", models.SmallIntegerField()),
                ("run_at", models.DateTimeField()),
                ("expires_at", models.DateTimeField(null=True)),
                ("attempt", models.IntegerField()),
                ("max_retries", models.IntegerField(null=True)),
                ("lease_expires_at", models.DateTimeField(null=True)),
                ("worker", models.TextField(null=True)),
                ("unique_key", models.TextField(null=True)),
                ("parent_id", models.UUIDField(null=True)),
                ("root_id", models.UUIDField(null=True)),
                ("group_id", models.UUIDField(null=True)),
                ("ignore_result", models.BooleanField()),
                ("progress_state", models.TextField(null=True)),
                ("meta", models.JSONField(null=True)),
                ("last_error", models.TextField(null=True)),
                ("options", models.JSONField(default=dict)),
                ("created_at", models.DateTimeField()),
                ("started_at", models.DateTimeField(null=True)),
            ],
            options={"db_table": table("jobs"), "ordering": ["-created_at"], "managed": False},
        ),
        migrations.CreateModel(
            name="Result",
            fields=[
                ("id", models.UUIDField(primary_key=True, serialize=False)),
                ("queue", models.TextField()),
                ("task", models.TextField()),
                ("state", models.TextField()),
                ("result", models.JSONField(null=True)),
                ("error", models.TextField(null=True)),
                ("traceback", models.TextField(null=True)),
                ("args", models.JSONField(default=list)),
                ("kwargs", models.JSONField(default=dict)),
                ("priority", models.SmallIntegerField()),
                ("attempt", models.IntegerField()),
                ("worker", models.TextField(null=True)),
                ("unique_key", models.TextField(null=True)),
                ("parent_id", models.UUIDField(null=True)),
                ("root_id", models.UUIDField(null=True)),
                ("group_id", models.UUIDField(null=True)),
                ("meta", models.JSONField(null=True)),
                ("created_at", models.DateTimeField()),
                ("started_at", models.DateTimeField(null=True)),
                ("finished_at", models.DateTimeField()),
            ],
            options={"db_table": table("results"), "ordering": ["-finished_at"],
                     "managed": False},
        ),
        migrations.CreateModel(
            name="Schedule",
            fields=[
                ("name", models.TextField(primary_key=True, serialize=False)),
                ("task", models.TextField()),
                ("args", models.JSONField(default=list)),
                ("kwargs", models.JSONField(default=dict)),
                ("options", models.JSONField(default=dict)),
                ("cron", models.TextField(null=True)),
                ("every", models.DurationField(null=True)),
                ("timezone", models.TextField()),
                ("enabled", models.BooleanField()),
                ("catch_up", models.BooleanField()),
                ("next_run_at", models.DateTimeField(null=True)),
                ("last_run_at", models.DateTimeField(null=True)),
                ("total_run_count", models.BigIntegerField()),
                ("source", models.TextField()),
                ("created_at", models.DateTimeField()),
                ("updated_at", models.DateTimeField()),
            ],
            options={"db_table": table("schedules"), "ordering": ["name"], "managed": False},
        ),
    ]
