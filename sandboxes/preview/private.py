"""Ports that are not public: who is asking, and whether the port's visibility
admits them (``private``: the owner, or someone who may look at the sandbox,
``policy.may(user, "view", sandbox)``; ``course``: also members of a course the
sandbox belongs to, ``policy.member``; ``authenticated``: any active user).

The preview host cannot see the IDE's session (a different origin, on purpose), so
it sends the browser once through ``/preview-auth/`` on the IDE origin, which checks
the session and sends it back to ``/__sandbox_preview_auth?ticket=…`` with a
signed, one-minute ticket bound to the preview host and the user; this layer then
sets a host-only ``sandbox_preview`` cookie (signed, HttpOnly, naming the user;
sandboxes/callers.py reads it) and never sees the IDE's session cookie.

The exposure comes from ``ports.find_exposed_recent`` (at most half a second old:
a revoke holds within a second on every process, expiry at once) and the WebSocket
re-check reads the database; the answer to "may this user look at this sandbox / is
this user in its course" is reused for a few seconds, so a withdrawn right stops
opening the preview within that time.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.views import redirect_to_login
from django.core import signing
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from sandboxes import callers, policy, ports, wsauth
from sandboxes.coordination import coordinator
from sandboxes.models import ExposedPort

from .hosts import Target, ide_origin, parse_preview_host, split_host
from .pages import page, page_html, redirect
from .scope import Scope, Send, http_scheme, request_path

AUTH_PATH = "/__sandbox_preview_auth"
TICKET_SALT = "sandboxes.preview.ticket"
TICKET_MAX_AGE = 60

# A "yes" from ``may_open`` for a non-owner is reused for this many seconds (a page
# load's requests then cost one query); a withdrawn right stops within it. The key
# holds the level, so a port shared more narrowly is asked again at once.
# Anything deleted (a share, a course, a port) or a user changed, in any server
# process, bumps the shared generation ``ACCESS`` and every "yes" is asked again.
RIGHTS_RECHECK_SECONDS = 5.0
ACCESS = "preview-access"
_rights: dict[tuple[int, str, str], tuple[float, int]] = {}


@receiver(post_delete)
def _forget_rights(sender: type, **kwargs: Any) -> None:
    coordinator().bump(ACCESS)


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def _forget_user_rights(sender: type, **kwargs: Any) -> None:
    fields = kwargs.get("update_fields")
    if not kwargs.get("created") and not (fields and set(fields) <= {"last_login"}):
        coordinator().bump(ACCESS)


Level = ports.Visibility


async def admitted(scope: Scope, send: Send, host: str, name: str, exposed: ExposedPort) -> bool:
    """Whether a request to a port that is not public may go on; if not, it has been
    answered: the ticket turned into a cookie, a refusal, a page saying the link
    ended, or a detour through the IDE's sign-in (which refuses those the level
    does not admit)."""
    if scope["type"] == "http" and scope["path"] == AUTH_PATH:
        await _accept_ticket(scope, send, name)
        return False
    if scope["type"] == "websocket" and not origin_allowed(scope):
        await send({"type": "websocket.close", "code": 4403})
        return False
    user_id = callers.preview_cookie_user(scope, name)
    level = ports.visibility(exposed)
    if user_id is not None and await _may_open_cached(user_id, exposed, level):
        return True
    ended = ports.ended(exposed)
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 4410 if ended else 4403})
    elif ended:
        await page(send, 410, *ended_page(ended), link=(_login_url(scope, host), "Sign in"))
    else:  # the IDE's sign-in says who is asking, and answers if they may not
        await redirect(send, _login_url(scope, host))
    return False


def admission(target: Target, user_id: int | None) -> Callable[[], Awaitable[int | None]]:
    """Asked while a WebSocket to ``target`` stays open (``ws_relay``): None while
    ``user_id`` (None: whoever holds the link) may still open the port, else the
    close code: 4404 unexposed or exposed anew, 4410 expired or revoked, 4403 else."""

    async def check() -> int | None:
        exposed = await ports.find_exposed(target.sandbox_id, target.port)
        if exposed is None or not hmac.compare_digest(
            exposed.token.encode(), target.token.encode()
        ):
            return 4404
        level = ports.visibility(exposed)
        if level == Level.PUBLIC or (
            user_id is not None and await _may_open_cached(user_id, exposed, level)
        ):
            return None
        return 4410 if ports.ended(exposed) else 4403

    return check


def ended_page(ended: str) -> tuple[str, str]:
    """Title and text of the page an expired or revoked link answers."""
    if ended == "expired":
        return (
            "This link has expired",
            "Its owner shared this preview for a limited time, which is over. "
            "Ask them for a new link; if this sandbox is yours, sign in to open it.",
        )
    return (
        "This link was revoked",
        "Its owner stopped sharing this preview. Ask them to share it again; "
        "if this sandbox is yours, sign in to open it.",
    )


def not_shared_page(level: str) -> tuple[str, str]:
    return (
        "Not shared with you",
        "You are signed in, but this preview is not shared with you: "
        + ports.AUDIENCE[Level(level)],
    )


def _login_url(scope: Scope, host: str) -> str:
    scheme = http_scheme(scope)
    _, port = split_host(host)
    here = f"{scheme}://{host}{request_path(scope, scope.get('raw_path') or b'')}"
    return ide_origin(scheme, port) + "/preview-auth/?" + urlencode({"next": here})


def origin_allowed(scope: Scope) -> bool:
    """A WebSocket to a port that is not public, which the preview cookie
    authenticates, must come from a page of that same preview host (scheme, host
    and port).

    Not from the IDE's origin: the cookie is host-only on the preview host, and the
    page that talks to the app's WebSocket is the app's own page on that host (in the
    IDE's preview pane too, an iframe whose origin is the preview host); the IDE
    itself never opens one. And never from a sibling preview, another local port or
    ``null``: the browser sends the cookie along from pages of the same site
    (SameSite=Lax), or under the same top-level site (the partitioned one), and
    every preview subdomain is the same site, so another tenant's app could
    otherwise talk to this one as the user who opened it.
    """
    return wsauth.origin_allowed(scope, wsauth.own_origins(scope))


async def may_open(user_id: int, exposed: ExposedPort, level: str) -> bool:
    """Whether a user may open a port at ``level``: its owner always; otherwise an
    active user whom the level admits."""
    sandbox = exposed.sandbox
    if level == Level.PUBLIC or user_id == sandbox.owner_id:
        return True
    user = await get_user_model().objects.filter(pk=user_id, is_active=True).afirst()
    if user is None:
        return False
    if level == Level.AUTHENTICATED:
        return True
    if level == Level.COURSE and await policy.member(user, sandbox):
        return True
    return await policy.may(user, "view", sandbox)


async def _may_open_cached(user_id: int, exposed: ExposedPort, level: str) -> bool:
    if user_id == exposed.sandbox.owner_id:
        return True
    key = (user_id, exposed.sandbox_id, level)
    now = time.monotonic()
    generation = await coordinator().generation(ACCESS)
    until, seen = _rights.get(key, (0.0, -1))
    if until > now and seen == generation:
        return True
    if not await may_open(user_id, exposed, level):
        _rights.pop(key, None)
        return False
    if len(_rights) >= 10_000:
        _rights.clear()
    if generation is not None:
        _rights[key] = (now + RIGHTS_RECHECK_SECONDS, generation)
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
    if http_scheme(scope) == "https" or name.endswith(".localhost"):
        # Partitioned (by the top-level site): it then works in the IDE's preview pane,
        # another site's frame, and is still sent to this host under no other site.
        morsel["samesite"] = "None"
        morsel["secure"] = True
        await redirect(send, next_path, morsel.OutputString() + "; Partitioned")
    else:  # plain HTTP elsewhere: no Secure cookie; it works in a tab of its own
        morsel["samesite"] = "Lax"
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
    if exposed is None or not hmac.compare_digest(exposed.token.encode(), target.token.encode()):
        return HttpResponse(
            page_html("No preview here", "This preview does not exist or is not shared with you."),
            status=404,
        )
    if not await may_open(user.pk, exposed, ports.visibility(exposed)):
        ended = ports.ended(exposed)
        if ended:
            return HttpResponse(page_html(*ended_page(ended)), status=410)
        return HttpResponse(page_html(*not_shared_page(ports.visibility(exposed))), status=404)
    ticket = signing.dumps({"h": back.name, "n": back.path, "u": user.pk}, salt=TICKET_SALT)
    return HttpResponseRedirect(f"{back.base}{AUTH_PATH}?{urlencode({'ticket': ticket})}")
