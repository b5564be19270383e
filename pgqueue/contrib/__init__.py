"""Optional integrations: Django (``pgqueue.contrib.django``), Flask (``pgqueue.contrib.flask``)
and Celery-compatible extras such as ``pgqueue.contrib.abortable``.

Nothing here is imported by pgqueue itself; each module needs its framework installed.
"""
