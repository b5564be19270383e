"""The shop as an ASGI app (`uvicorn shop.asgi:application`), with pgqueue's dashboard
under /pgqueue: read-only, since this example has no login to put in front of its
actions (docs/dashboard.md, "Mounting in Django")."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
django_application = get_asgi_application()

from pgqueue.contrib.django.dashboard import mount  # noqa: E402  (after Django's setup)

application = mount(django_application, prefix="/pgqueue")
