"""``INSTALLED_APPS = [..., "pgqueue.contrib.django"]``."""

from __future__ import annotations

from django.apps import AppConfig, apps

from pgqueue.contrib.django.conf import get_app, setting


class PgQueueConfig(AppConfig):
    name = "pgqueue.contrib.django"
    label = "pgqueue"
    verbose_name = "pgqueue"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        app = get_app()
        if setting("PGQUEUE_AUTODISCOVER"):
            # Not this package's own tasks.py: that is the django.tasks backend.
            app.autodiscover_tasks([config.name for config in apps.get_app_configs()
                                    if config.name != self.name])
        app.finalize()
