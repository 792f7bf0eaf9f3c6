"""Preview URLs: an ASGI layer in front of the whole application.

A request whose ``Host`` is ``{port}-{id}-{token}.{PREVIEW_DOMAIN}`` never reaches
Django's URL routing: the layer checks the token against the exposed port, wakes
the sandbox and tunnels the request through the sandbox's agent to
``127.0.0.1:{port}`` inside it, as HTTP/1.1 or WebSocket over the raw tunnel, bodies
streamed both ways with backpressure. ``/preview/{id}/{port}/…`` on the IDE's own
host is the path-based fallback for deployments without wildcard DNS, owner-only;
``/p/{code}`` there is a port's short share link.

Lessons from jupyter-server-proxy's advisories are applied: the WebSocket upgrade is
authorised exactly like a plain request, and no page reflects the host or the path
without escaping.

One module per job:

- ``hosts``: preview host names (``parse_preview_host``) and the IDE's origin;
- ``middleware``: the ASGI layer (``PreviewMiddleware``), which routes by Host;
- ``private``: ports that are not public: the ``/preview-auth/`` ticket, the cookie,
  who each visibility admits;
- ``links``: short share links, and the page an expired or revoked one answers;
- ``fallback``: the path-based fallback;
- ``tunnel``: where a request goes (``Upstream``), the pipe, the request's headers;
- ``http_relay`` and ``ws_relay``: HTTP and WebSocket through the pipe;
- ``pages``: error pages and redirects; ``scope``: what is read from a scope.

Who is calling (tokens, the session, the ``sandbox_preview`` cookie) is
sandboxes/callers.py's answer.
"""

from __future__ import annotations

from .fallback import FALLBACK_PREFIX
from .hosts import Target, ide_origin, is_preview_domain, parse_preview_host, split_host
from .links import share_link_view
from .middleware import PreviewMiddleware, proxy
from .private import AUTH_PATH, may_open, preview_auth_view
from .tunnel import PortClosed, Upstream, open_tunnel

__all__ = [
    "AUTH_PATH",
    "FALLBACK_PREFIX",
    "PortClosed",
    "PreviewMiddleware",
    "Target",
    "Upstream",
    "ide_origin",
    "is_preview_domain",
    "may_open",
    "open_tunnel",
    "parse_preview_host",
    "preview_auth_view",
    "proxy",
    "share_link_view",
    "split_host",
]
