"""The path-based fallback for deployments without wildcard DNS:
``/preview/{id}/{port}/…`` on the IDE's own host, for the sandbox's owner only.

The owner is named by a token or by the session cookie (sandboxes/callers.py). The
browser attaches the cookie to requests other pages start, so session callers pass
the IDE's Origin check (WebSockets) and CSRF check (unsafe methods), and the app's
pages run in an opaque origin (a CSP sandbox): they can neither read the IDE's
cookies nor call its API as the owner.
"""

from __future__ import annotations

import re

from sandboxes import callers, ports, wsauth
from sandboxes.models import ExposedPort

from .pages import page, redirect, refuse
from .scope import Scope, Send, host_header, request_path
from .tunnel import Upstream

FALLBACK_PREFIX = "/preview/"
_FALLBACK = re.compile(r"^/preview/(?P<id>[a-z0-9]{12})/(?P<port>[0-9]{1,5})(?P<rest>/.*)?$")
# A preview rendered on the IDE's own origin runs in an opaque origin: it can neither
# read the IDE's cookies nor call its API as the owner.
_FALLBACK_CSP = (
    b"sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads "
    b"allow-popups-to-escape-sandbox"
)


def _browser_check_fails(scope: Scope, by_session: bool) -> bool:
    """A WebSocket whose ``Origin`` is not exactly one of the IDE's own
    (``wsauth.ide_origins``), as on the IDE's other WebSockets; for a session caller,
    an unsafe method without Django's CSRF proof (the ``X-CSRFToken`` header, and a
    matching Origin), exactly as the API asks of session callers.

    A preview's own pages on the fallback run in an opaque origin (the CSP sandbox),
    so their scripts' WebSockets and form posts fail these checks on purpose: under
    the session they would act with the owner's cookie from any page of the same
    site. Such apps need a preview host (or a token).
    """
    if scope["type"] == "websocket":
        return not wsauth.origin_allowed(scope, wsauth.ide_origins(scope))
    # Django's check on the headers alone: the body is streamed to the app, never
    # read here (without a form content type the CSRF check reads no form field).
    return by_session and callers.csrf_fails(callers.headers_request(scope))


async def fallback_upstream(scope: Scope, send: Send) -> Upstream | None:
    """Where a fallback request goes; None when it has been answered instead (a
    refusal, or the redirect from ``/preview/{id}/{port}`` to its folder)."""
    match = _FALLBACK.match(scope["path"])
    caller = await callers.scope_caller(scope)
    user = caller.user
    if user.is_authenticated and _browser_check_fails(scope, caller.credential == "session"):
        await refuse(
            scope,
            send,
            403,
            "Request refused",
            "This request came from another site, or without the CSRF token "
            "(X-CSRFToken header): the session opens path-based previews only from "
            "the IDE's own pages. Programs use a bearer token.",
        )
        return None
    exposed: ExposedPort | None = None
    if match and user.is_authenticated:
        exposed = await ports.find_exposed(match["id"], int(match["port"]))
        if exposed is not None and exposed.sandbox.owner_id != user.pk:
            exposed = None
    if exposed is None or match is None:
        if scope["type"] == "http" and not user.is_authenticated:
            await page(send, 401, "Log in first", "Path-based previews are for their owner.")
        else:
            await refuse(scope, send, 404, "No preview here", "This port is not exposed.")
        return None
    prefix = f"/preview/{match['id']}/{match['port']}"
    raw = scope.get("raw_path") or scope["path"].encode()
    rest = raw[len(prefix) :] or b"/"
    if scope["type"] == "http" and not match["rest"]:
        # /preview/id/port → /preview/id/port/ so the app's relative links resolve
        await redirect(send, prefix + "/")
        return None
    path = request_path(scope, rest)
    if scope["type"] == "websocket":
        query = scope.get("query_string") or b""
        cleaned = [p for p in query.split(b"&") if not p.startswith(b"token=")]
        path = request_path({**scope, "query_string": b"&".join(cleaned)}, rest)
    return Upstream(
        exposed.sandbox,
        exposed.port,
        path,
        host_header(scope),
        drop_headers=frozenset({b"authorization"}),
        response_headers=((b"content-security-policy", _FALLBACK_CSP),),
    )
