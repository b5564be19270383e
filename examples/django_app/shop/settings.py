"""Settings of the example shop: Django on PostgreSQL, with pgqueue as the task queue."""

import os
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "pgqueue.contrib.django",  # settings, tasks.py discovery, `manage.py pgqueue`, admin
    "orders",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "shop.urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
WSGI_APPLICATION = "shop.wsgi.application"


def database_from_url(url: str) -> dict:
    """DATABASES["default"] from a PostgreSQL URL (what dj-database-url does)."""
    params = conninfo_to_dict(url)
    names = {"dbname": "NAME", "user": "USER", "password": "PASSWORD", "host": "HOST",
             "port": "PORT"}
    config = {"ENGINE": "django.db.backends.postgresql", "OPTIONS": {}}
    for key, value in params.items():
        if key in names:
            config[names[key]] = value
        else:
            config["OPTIONS"][key] = value  # sslmode, options, ...
    return config


DATABASES = {"default": database_from_url(
    os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"

# pgqueue: every PGQUEUE_X setting is pgqueue's `x` setting. The queue lives in the
# `default` database above (schema "pgqueue", or $PGQUEUE_SCHEMA).
PGQUEUE_SCHEMA = os.environ.get("PGQUEUE_SCHEMA", "pgqueue")
PGQUEUE_TASK_DEFAULT_QUEUE = "default"
PGQUEUE_BEAT_SCHEDULE = {
    # A periodic job: `manage.py pgqueue worker --beat` (or `manage.py pgqueue beat`).
    "expire-stale-orders": {
        "task": "orders.tasks.expire_stale_orders",
        "schedule": 60.0,
        "kwargs": {"older_than_minutes": 30},
    },
}

# Django's own tasks framework (django.tasks, Django 6; the django-tasks backport on 5.2)
# runs on pgqueue's workers too.
TASKS = {
    "default": {
        "BACKEND": "pgqueue.contrib.django.tasks.PgQueueBackend",
        "QUEUES": [],  # any queue name
        "OPTIONS": {"MAX_RETRIES": 2, "RETRY_DELAY": 0.2},
    },
}
