"""``INSTALLED_APPS = [..., "pgqueue.contrib.django"]``."""

from __future__ import annotations

from django.apps import AppConfig

from pgqueue.contrib.django.conf import get_app, setting


class PgQueueConfig(AppConfig):
    name = "pgqueue.contrib.django"
    label = "pgqueue"
    verbose_name = "pgqueue"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        app = get_app()
        if setting("PGQUEUE_AUTODISCOVER"):
            app.autodiscover_tasks(force=True)  # every installed app's tasks.py
        app.finalize()
