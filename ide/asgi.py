"""The ASGI application Daphne serves: HTTP through Django, WebSockets through Channels.

Static files are answered before Django so that pages work with DEBUG off and no
separate web server.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ide.settings")

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

django_app = get_asgi_application()

application = ProtocolTypeRouter(
    {
        "http": ASGIStaticFilesHandler(django_app),
    }
)
