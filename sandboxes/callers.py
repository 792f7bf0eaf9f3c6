"""Who is calling: one answer for the API, the WebSocket routes and previews.

Three credentials name a user:

- an API token: ``Authorization: Bearer <token>``, or ``?token=`` on a WebSocket
  upgrade (browsers cannot give those headers). Programs use it; a browser cannot
  attach it to a request another page starts, so it needs no CSRF or Origin check.
  A token that is present decides alone: one that does not verify is a refusal,
  never a fall back to the session.
- the Django session cookie (the browser on the IDE's origin). The browser attaches
  it to requests other pages start, so unsafe methods need Django's CSRF proof.
- the ``sandbox_preview`` cookie: host-only on one preview host, signed, naming the
  user a ``/preview-auth/`` ticket was issued to (sandboxes/preview/private.py).

Each transport hands over what it has: the API a Django request (``api_caller``),
the WebSocket routes and the path fallback an ASGI scope (``scope_caller``), a
private preview port its scope and host name (``preview_cookie_user``). On the
WebSocket routes Channels' ``AuthMiddlewareStack`` loads the session; the token is
decided here (sandboxes/wsauth.py).
"""

from __future__ import annotations

import io
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from importlib import import_module
from typing import Any, Literal
from urllib.parse import parse_qs

from django.conf import settings
from django.contrib.auth import aget_user
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core import signing
from django.core.handlers.asgi import ASGIRequest
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.http import HttpRequest
from django.utils import timezone
from ninja.utils import check_csrf

from sandboxes.coordination import coordinator
from sandboxes.errors import Forbidden, SandboxError, Unauthorized
from sandboxes.models import ApiToken, hash_token

Scope = Mapping[str, Any]  # an ASGI scope, only read here
Credential = Literal["token", "session"]

SAFE_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE")
PREVIEW_COOKIE = "sandbox_preview"
PREVIEW_COOKIE_SALT = "sandboxes.preview.cookie"
# Headers that describe a body: left out when judging a request from its headers
# alone (the CSRF check must not go looking for a form field in a body not read yet).
_BODY_HEADERS = frozenset({b"content-length", b"content-type", b"transfer-encoding"})
_LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class Caller:
    """Who a request comes from: ``user`` (anonymous when nothing verified), the
    credential that named them (None: none was offered), and, when the request must
    be refused for its credentials, why."""

    user: AbstractBaseUser | AnonymousUser
    credential: Credential | None = None
    refusal: SandboxError | None = None


def _invalid_token() -> Unauthorized:
    return Unauthorized(
        "The bearer token is not valid (revoked, mistyped, or not a "
        "'Bearer <token>' header); create a new one on the account page.",
        code="invalid_token",
    )


# --------------------------------------------------------------------------- reading a scope


def header(scope: Scope, name: bytes) -> str:
    """The first value of header ``name`` (lower-case) in an ASGI scope, or ""."""
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


def cookie_values(scope: Scope, wanted: str) -> list[str]:
    """Every value the request carries for the cookie ``wanted``, in order: a browser
    sends several under one name (other paths, or one tossed in by a sibling host)."""
    found = []
    for key, value in scope.get("headers", ()):
        if key.lower() == b"cookie":
            for part in bytes(value).decode("latin-1").split(";"):
                name, sep, val = part.strip().partition("=")
                if sep and name.strip() == wanted:
                    found.append(val.strip())
    return found


def headers_request(scope: Scope) -> ASGIRequest:
    """A Django request made of the scope's headers alone, its body left unread."""
    headers = [(k, v) for k, v in scope.get("headers", ()) if k.lower() not in _BODY_HEADERS]
    return ASGIRequest({**scope, "headers": headers}, io.BytesIO())


# --------------------------------------------------------------------------- tokens


def bearer_token(value: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value; None if malformed."""
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def scope_token(scope: Scope) -> str | None:
    """The token a request carries: "" for a malformed one, None if none.

    ``Authorization`` on any request; ``?token=`` on a WebSocket upgrade only.
    """
    value = header(scope, b"authorization")
    if value:
        return bearer_token(value) or ""
    if scope.get("type") != "websocket":
        return None
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return query["token"][-1].strip() if "token" in query else None


# A verified token is trusted for this long without asking the database again, so a
# burst of calls costs one lookup. Only while nothing was revoked since, in any server
# process: revoking a token (or changing a user) bumps the shared generation
# ``tokens`` (``sandboxes.coordination``), and an entry made under an older one is
# dropped. When the generation cannot be read (Redis lost) nothing is trusted.
TOKEN_CACHE_TTL = 2.0
TOKENS = "tokens"
_token_cache: dict[str, tuple[float, int, AbstractBaseUser]] = {}


async def user_for_token(token: str) -> AbstractBaseUser | None:
    """The active user a token belongs to, or None."""
    if not token:
        return None
    key_hash = hash_token(token)
    generation = await coordinator().generation(TOKENS)
    cached = _token_cache.get(key_hash)
    if cached and cached[0] > time.monotonic() and cached[1] == generation:
        return cached[2]
    try:
        row = await ApiToken.objects.select_related("user").aget(key_hash=key_hash)
    except ApiToken.DoesNotExist:
        return None
    if not row.user.is_active:
        return None
    now = timezone.now()
    if row.last_used_at is None or now - row.last_used_at > _LAST_USED_RESOLUTION:
        await ApiToken.objects.filter(pk=row.pk).aupdate(last_used_at=now)
    if len(_token_cache) > 10_000:
        _token_cache.clear()
    if generation is not None:
        _token_cache[key_hash] = (time.monotonic() + TOKEN_CACHE_TTL, generation, row.user)
    return row.user


@receiver(post_delete, sender=ApiToken)
def _forget_token(sender: type[ApiToken], instance: ApiToken, **kwargs: Any) -> None:
    _token_cache.pop(instance.key_hash, None)
    coordinator().bump(TOKENS)


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def _forget_user(sender: type[AbstractBaseUser], instance: AbstractBaseUser, **kwargs: Any) -> None:
    """A user changed (deactivated, say): their tokens are looked up afresh everywhere."""
    fields = kwargs.get("update_fields")
    if not kwargs.get("created") and not (fields and set(fields) <= {"last_login"}):
        coordinator().bump(TOKENS)


async def _token_caller(token: str) -> Caller:
    user = await user_for_token(token)
    if user is None:
        return Caller(AnonymousUser(), "token", _invalid_token())
    return Caller(user, "token")


# --------------------------------------------------------------------------- the session


def _session_store(key: str) -> Any:
    return import_module(settings.SESSION_ENGINE).SessionStore(key)


class _SessionHolder:
    """What ``aget_user`` reads: a request with nothing but its session."""

    def __init__(self, key: str) -> None:
        self.session = _session_store(key)


async def session_user(request: HttpRequest) -> AbstractBaseUser | AnonymousUser:
    """The session's user, loaded without the (sync) session/auth middleware."""
    if hasattr(request, "auser"):  # served through the page stack
        user: AbstractBaseUser | AnonymousUser = await request.auser()
        return user
    key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    if not key:
        return AnonymousUser()
    request.session = _session_store(key)
    return await aget_user(request)


def csrf_fails(request: HttpRequest) -> bool:
    """Whether an unsafe request lacks Django's CSRF proof (the ``X-CSRFToken``
    header matching the cookie, and a trusted Origin)."""
    return request.method not in SAFE_METHODS and check_csrf(request) is not None


# --------------------------------------------------------------------------- per transport


async def api_caller(request: HttpRequest) -> Caller:
    """The API's caller: a bearer token decides alone; otherwise the session, which
    must pass the CSRF check on unsafe methods. ``refusal`` says why not."""
    value = request.headers.get("Authorization", "")
    if value:
        return await _token_caller(bearer_token(value) or "")
    user = await session_user(request)
    if not user.is_authenticated:
        return Caller(user, None, Unauthorized())
    if csrf_fails(request):
        refusal = Forbidden(
            "CSRF check failed: send the X-CSRFToken header with the csrftoken "
            "cookie's value, or use a bearer token.",
            code="csrf_failed",
        )
        return Caller(user, "session", refusal)
    return Caller(user, "session")


async def scope_caller(scope: Scope, *, session: bool = True) -> Caller:
    """The caller of an ASGI request: its token (``scope_token``) decides alone;
    otherwise, with ``session``, the first session cookie it carries. Browser checks
    (CSRF, Origin) are the transport's: they depend on what is asked."""
    token = scope_token(scope)
    if token is not None:
        return await _token_caller(token)
    keys = cookie_values(scope, settings.SESSION_COOKIE_NAME) if session else []
    if not keys:
        return Caller(AnonymousUser())
    user = await aget_user(_SessionHolder(keys[0]))  # type: ignore[arg-type]
    return Caller(user, "session")


# --------------------------------------------------------------------------- preview cookie


def preview_cookie(host: str, user_id: int) -> str:
    """The signed ``sandbox_preview`` value naming ``user_id`` on preview ``host``."""
    return signing.dumps({"h": host, "u": user_id}, salt=PREVIEW_COOKIE_SALT)


def signed_user_id(data: object) -> int | None:
    """The user id (``"u"``) of a signed preview ticket or cookie's payload."""
    value = data.get("u") if isinstance(data, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def preview_cookie_user(scope: Scope, host: str) -> int | None:
    """The user the first valid ``sandbox_preview`` cookie for ``host`` names, if any.

    Every value is tried, not only the first: a stale cookie, or one another host
    managed to set, must not hide the valid one (nor can it stand in for it: each is
    signed and bound to its host).
    """
    for value in cookie_values(scope, PREVIEW_COOKIE):
        try:
            data = signing.loads(
                value, salt=PREVIEW_COOKIE_SALT, max_age=settings.PREVIEW_COOKIE_MAX_AGE
            )
        except signing.BadSignature:
            continue
        if isinstance(data, dict) and data.get("h") == host and signed_user_id(data) is not None:
            return signed_user_id(data)
    return None
