"""Private ports: the owner's login, or that of someone who may look at the sandbox
(``policy.may(user, "view", sandbox)``: the classroom lets a course's teacher and a
class it is shared with), on top of the preview link.

The preview host cannot see the IDE's session (a different origin, on purpose), so
it sends the browser once through ``/preview-auth/`` on the IDE origin, which checks
the session and sends it back to ``/__sandbox_preview_auth?ticket=…`` with a
signed, one-minute ticket bound to the preview host and the user; this layer then
sets a host-only ``sandbox_preview`` cookie (signed, HttpOnly, SameSite=Lax, naming
the user; sandboxes/callers.py reads it) and never sees the IDE's session cookie.
A viewer's cookie is checked against the policy again every few seconds, so a
revoked view stops opening the preview even with a cookie already issued.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlencode, urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.views import redirect_to_login
from django.core import signing
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from sandboxes import callers, ports, wsauth
from sandboxes.models import Sandbox
from sandboxes.policy import may

from .hosts import Target, ide_origin, parse_preview_host, split_host
from .pages import page, page_html, redirect
from .scope import Scope, Send, http_scheme, request_path

AUTH_PATH = "/__sandbox_preview_auth"
TICKET_SALT = "sandboxes.preview.ticket"
TICKET_MAX_AGE = 60

# A viewer's "yes" from ``may_open`` is reused for this many seconds (a page load's
# requests then cost one query); a revoked view stops opening previews within it.
VIEWER_RECHECK_SECONDS = 5.0
_viewers: dict[tuple[int, str], float] = {}


async def admitted(scope: Scope, send: Send, host: str, name: str, sandbox: Sandbox) -> bool:
    """Whether a request to a private port of ``sandbox`` may go on; if not, it has
    been answered: the ticket turned into a cookie, a refusal, or a detour through
    the IDE's sign-in."""
    if scope["type"] == "http" and scope["path"] == AUTH_PATH:
        await _accept_ticket(scope, send, name)
        return False
    if scope["type"] == "websocket" and not origin_allowed(scope):
        await send({"type": "websocket.close", "code": 4403})
        return False
    user_id = callers.preview_cookie_user(scope, name)
    if user_id is None or not await _may_open_cached(user_id, sandbox):
        if scope["type"] == "http":
            await redirect(send, _login_url(scope, host))
        else:
            await send({"type": "websocket.close", "code": 4403})
        return False
    return True


def _login_url(scope: Scope, host: str) -> str:
    scheme = http_scheme(scope)
    _, port = split_host(host)
    here = f"{scheme}://{host}{request_path(scope, scope.get('raw_path') or b'')}"
    return ide_origin(scheme, port) + "/preview-auth/?" + urlencode({"next": here})


def origin_allowed(scope: Scope) -> bool:
    """A WebSocket to a private port, which the preview cookie authenticates, must come
    from a page of that same preview host (scheme, host and port).

    Not from the IDE's origin: the cookie is host-only on the preview host, and the
    page that talks to the app's WebSocket is the app's own page on that host (in the
    IDE's preview pane too, an iframe whose origin is the preview host); the IDE
    itself never opens one. And never from a sibling preview, another local port or
    ``null``: SameSite=Lax sends the cookie to every port of the same site, and every
    preview subdomain is the same site, so another tenant's app could otherwise talk
    to this one as the user who opened it.
    """
    return wsauth.origin_allowed(scope, wsauth.own_origins(scope))


async def may_open(user_id: int, sandbox: Sandbox) -> bool:
    """Whether a user may open the sandbox's private previews: its owner, or an
    active user the policy lets ``view`` it."""
    if user_id == sandbox.owner_id:
        return True
    user = await get_user_model().objects.filter(pk=user_id, is_active=True).afirst()
    return user is not None and await may(user, "view", sandbox)


async def _may_open_cached(user_id: int, sandbox: Sandbox) -> bool:
    if user_id == sandbox.owner_id:
        return True
    key = (user_id, sandbox.id)
    now = time.monotonic()
    if _viewers.get(key, 0.0) > now:
        return True
    if not await may_open(user_id, sandbox):
        _viewers.pop(key, None)
        return False
    if len(_viewers) >= 10_000:
        _viewers.clear()
    _viewers[key] = now + VIEWER_RECHECK_SECONDS
    return True


async def _accept_ticket(scope: Scope, send: Send, name: str) -> None:
    query = parse_qs((scope.get("query_string") or b"").decode("latin-1"))
    try:
        data = signing.loads(query.get("ticket", [""])[0], salt=TICKET_SALT, max_age=TICKET_MAX_AGE)
    except signing.BadSignature:
        data = None
    user_id = callers.signed_user_id(data)
    if not isinstance(data, dict) or data.get("h") != name or user_id is None:
        await page(
            send,
            403,
            "Link expired",
            "This sign-in link is not valid for this preview (or has expired). "
            "Open the preview URL again.",
        )
        return
    next_path = local_path(data.get("n")) or "/"
    cookie: SimpleCookie = SimpleCookie()
    cookie[callers.PREVIEW_COOKIE] = callers.preview_cookie(name, user_id)
    morsel = cookie[callers.PREVIEW_COOKIE]
    morsel["path"] = "/"
    morsel["max-age"] = settings.PREVIEW_COOKIE_MAX_AGE
    morsel["httponly"] = True
    morsel["samesite"] = "Lax"
    if http_scheme(scope) == "https":
        morsel["secure"] = True
    await redirect(send, next_path, morsel.OutputString())


def local_path(value: object) -> str | None:
    """``value`` if it is a path on the current host (``/x?y``), else None.

    It must start with exactly one slash: browsers read two slashes, or a slash and
    a backslash, as the start of another host, and drop tabs and newlines before
    parsing, so backslashes, spaces and control characters are refused anywhere; so
    is anything beyond ASCII, which a browser would have percent-encoded.
    """
    if not isinstance(value, str) or not value.startswith("/"):
        return None
    if any(not 0x20 < ord(char) < 0x7F for char in value) or "\\" in value:
        return None
    return None if value.startswith("//") else value


@dataclass(frozen=True)
class _Next:
    """Where ``/preview-auth/`` sends the browser back to."""

    base: str  # scheme://host[:port] of the preview
    name: str  # the preview host's name, which the ticket is bound to
    target: Target
    path: str  # path and query, always on that host


def _next_preview(request: HttpRequest) -> _Next | None:
    """``?next=`` of ``/preview-auth/``, if it is a preview URL of this server.

    Only http(s) on the scheme and port the IDE is reached on (preview hosts share
    them, see ``ports.preview_url``) or those of ``IDE_BASE_URL``: a ticket never
    goes to another program on another port of a preview name (``*.localhost`` is
    loopback). Its path must stay on the preview host (``local_path``).
    """
    try:
        parts = urlsplit(request.GET.get("next", ""))
    except ValueError:
        return None
    name, port = split_host(parts.netloc)
    scheme = request.scheme or "http"
    served = {(o.scheme, o.port) for o in wsauth.host_origins(scheme, request.get_host())}
    origin = wsauth.web_origin(parts.scheme, name, port)
    target = parse_preview_host(name)
    path = local_path((parts.path or "/") + ("?" + parts.query if parts.query else ""))
    if origin is None or (origin.scheme, origin.port) not in served or not target or not path:
        return None
    return _Next(f"{parts.scheme}://{parts.netloc}", name, target, path)


async def preview_auth_view(request: HttpRequest) -> HttpResponse:
    """``/preview-auth/?next=<preview URL>`` on the IDE origin: the session of the
    owner (or of someone who may look at the sandbox, checked now) buys a one-minute
    ticket for that preview host, and the browser goes back."""
    user = await callers.session_user(request)
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    back = _next_preview(request)
    if back is None:
        return HttpResponse(
            page_html(
                "Not a preview link",
                "This sign-in link does not lead to a preview of this server. "
                "Open the preview URL again.",
            ),
            status=400,
        )
    target = back.target
    exposed = await ports.find_exposed(target.sandbox_id, target.port)
    if (
        exposed is None
        or not hmac.compare_digest(exposed.token.encode(), target.token.encode())
        or not await may_open(user.pk, exposed.sandbox)
    ):
        return HttpResponse(
            page_html("No preview here", "This preview does not exist or is not shared with you."),
            status=404,
        )
    ticket = signing.dumps({"h": back.name, "n": back.path, "u": user.pk}, salt=TICKET_SALT)
    return HttpResponseRedirect(f"{back.base}{AUTH_PATH}?{urlencode({'ticket': ticket})}")
