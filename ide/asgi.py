"""The ASGI application Daphne serves.

HTTP goes to Django (static files answered first, so pages work with DEBUG off and
no separate web server); WebSockets go to Channels consumers. Preview hosts are
recognised before either (see sandboxes/preview/).
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ide.settings")

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

django_app = get_asgi_application()

from sandboxes.api.asgi import ApiHandler  # noqa: E402

api_app = ApiHandler()

from sandboxes.mcp.asgi import McpApp, is_mcp  # noqa: E402

mcp_app = McpApp()


async def http_app(scope, receive, send):  # type: ignore[no-untyped-def]
    """/api/ skips the page middleware (see sandboxes/api/asgi.py); /mcp is the MCP
    server for programs (sandboxes/mcp/asgi.py); the rest is Django."""
    if scope["path"].startswith("/api/"):
        return await api_app(scope, receive, send)
    if is_mcp(scope["path"]):
        return await mcp_app(scope, receive, send)
    return await pages_app(scope, receive, send)


pages_app = ASGIStaticFilesHandler(django_app)

from channels.auth import AuthMiddlewareStack  # noqa: E402

from ide.routing import websocket_urlpatterns  # noqa: E402
from sandboxes.wsauth import TokenAuthMiddleware, WebSocketOriginValidator  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": WebSocketOriginValidator(
            AuthMiddlewareStack(TokenAuthMiddleware(URLRouter(websocket_urlpatterns)))
        ),
    }
)

# Preview hosts ({port}-{id}-{token}.PREVIEW_DOMAIN) are served before anything else.
from sandboxes.preview import PreviewMiddleware  # noqa: E402

application = PreviewMiddleware(application)

# Large request bodies are read lazily, each admitted from its headers before any of
# it is read, and WebSockets learn their send buffer (see ide/daphne_internals.py).
from django.conf import settings  # noqa: E402

from ide.daphne_internals import Admission  # noqa: E402
from ide.daphne_internals import wrap as with_flow_control  # noqa: E402
from sandboxes.api.asgi import admit, admit_size  # noqa: E402
from sandboxes.mcp.asgi import admit as admit_mcp  # noqa: E402
from sandboxes.preview import FALLBACK_PREFIX, is_preview_domain, split_host  # noqa: E402


async def admit_body(scope):  # type: ignore[no-untyped-def]
    """Bodies for /api/ and /mcp are theirs to admit (routed as above); a page takes form
    fields only, never more than DATA_UPLOAD_MAX_MEMORY_SIZE. Previews are the
    sandbox's business."""
    host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
    if is_preview_domain(split_host(host)[0]) or scope["path"].startswith(FALLBACK_PREFIX):
        return None
    admission: Admission
    if scope["path"].startswith("/api/"):
        admission = await admit(scope)
    elif is_mcp(scope["path"]):
        admission = await admit_mcp(scope)
    else:
        admission = admit_size(scope, settings.DATA_UPLOAD_MAX_MEMORY_SIZE, "API_MAX_JSON_BODY")
    return admission


application = with_flow_control(application, admit_body)

# The reaper and the egress proxy start with the first request (or lifespan start-up)
# under any ASGI server (ide/background.py). In-process tests use ``app``: no reaper.
from ide.background import Background  # noqa: E402

app = application
application = Background(app)
