"""The browser-facing edges of previews and WebSockets, without an engine: which
cookies an app may set, which Origins a cookie-authenticated upgrade may come from,
which paths the preview sign-in may send the browser back to."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import signing
from django.test import override_settings

from sandboxes import callers, wsauth
from sandboxes.preview import http_relay, private

HOST = "3000-abcdefghij12-0123456789abcdef.preview.localhost"


def _scope(host: str, *origins: str, query: bytes = b"", **extra: Any) -> dict[str, Any]:
    headers = [(b"host", host.encode())] + [(b"origin", o.encode()) for o in origins]
    return {"type": "websocket", "scheme": "ws", "headers": headers, "query_string": query, **extra}


def test_app_cookies_stay_on_their_host() -> None:
    own = http_relay.own_cookie
    assert own(b"toss=1; Domain=preview.localhost; Path=/") == b"toss=1; Path=/"
    assert own(b"a=1;domain=.localhost;HttpOnly; DOMAIN = x") == b"a=1;HttpOnly"
    assert own(b"theme=dark; Path=/; SameSite=Lax") == b"theme=dark; Path=/; SameSite=Lax"
    for bad in (
        b"sessionid=x; Path=/",
        b"csrftoken=x",
        b"sandbox_preview=x",
        b"SessionID=x",
        b" sandbox_preview =x",
        b"django_language=fr",
        b"=sessionid=x",  # nameless: reaches the server as sessionid=x
        b"noequals",
    ):
        assert own(bad) is None, bad
    headers = http_relay.response_headers(
        [(b"set-cookie", b"sessionid=x"), (b"set-cookie", b"ok=1; Domain=localhost")]
    )
    assert headers == [(b"set-cookie", b"ok=1")]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/", "/"),
        ("/echo?a=1&next=//x", "/echo?a=1&next=//x"),
        ("//evil.example", None),
        ("/\\evil.example", None),
        ("/\t/evil.example", None),
        ("/a\\b", None),
        ("/\r\nSet-Cookie: x=1", None),
        ("/é", None),
        ("evil.example", None),
        ("", None),
        (None, None),
    ],
)
def test_local_paths(value: object, expected: str | None) -> None:
    assert private.local_path(value) == expected


def test_every_preview_cookie_value_is_tried() -> None:
    good = signing.dumps({"h": HOST, "u": 7}, salt=callers.PREVIEW_COOKIE_SALT)
    other_host = signing.dumps({"h": "x" + HOST, "u": 8}, salt=callers.PREVIEW_COOKIE_SALT)
    cookie = f"sandbox_preview=forged; sandbox_preview={other_host}; a=1; sandbox_preview={good}"
    scope = {"headers": [(b"cookie", cookie.encode())]}
    assert callers.preview_cookie_user(scope, HOST) == 7
    assert (
        callers.preview_cookie_user({"headers": [(b"cookie", b"sandbox_preview=x")]}, HOST) is None
    )
    assert (
        callers.preview_cookie_user(
            {"headers": [(b"cookie", f"sandbox_preview={good}".encode())]}, "x" + HOST
        )
        is None
    )


def _ide_allows(host: str, origin: str) -> bool:
    scope = _scope(host, origin)
    return wsauth.origin_allowed(scope, wsauth.ide_origins(scope))


@override_settings(ALLOWED_HOSTS=["localhost", "127.0.0.1", "[::1]"], IDE_BASE_URL="")
def test_ide_origins_are_exact() -> None:
    assert _ide_allows("127.0.0.1:8000", "http://127.0.0.1:8000")
    assert _ide_allows("127.0.0.1:8000", "http://localhost:8000")  # the same IDE
    assert _ide_allows("localhost:8000", "http://[::1]:8000")
    assert _ide_allows("localhost", "http://localhost:80")
    for origin in (
        "http://127.0.0.1:1",  # another local app
        "http://localhost:8001",
        "https://localhost:8000",
        f"http://{HOST}:8000",  # a sibling preview
        "http://preview.localhost:8000",
        "null",
        "http://evil.example",
        "http://localhost:8000/path",
        "file://",
        "",
    ):
        assert not _ide_allows("localhost:8000", origin), origin
    # a Host that is not the IDE's gives no origin of its own
    assert not _ide_allows("evil.example:8000", "http://evil.example:8000")
    # several Origin headers: refused; none at all: a program, which must authenticate
    assert not wsauth.origin_allowed(_scope("localhost", "http://localhost", "null"), set())
    assert wsauth.origin_allowed(_scope("localhost"), set())


@override_settings(
    ALLOWED_HOSTS=["*"],
    IDE_BASE_URL="https://ide.example.com",
    CSRF_TRUSTED_ORIGINS=["https://admin.example.com", "https://*.example.com"],
)
def test_ide_origins_from_settings() -> None:
    assert _ide_allows("10.0.0.5:8000", "https://ide.example.com")
    assert _ide_allows("10.0.0.5:8000", "https://admin.example.com")
    assert _ide_allows("10.0.0.5:8000", "http://10.0.0.5:8000")  # the Host itself
    assert not _ide_allows("10.0.0.5:8000", "https://other.example.com")  # no wildcards
    assert not _ide_allows("10.0.0.5:8000", "http://localhost:8000")  # "*" names nobody


@override_settings(
    ALLOWED_HOSTS=["ide.example.com"],
    IDE_BASE_URL="",
    SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"),
)
def test_behind_a_tls_proxy_the_forwarded_scheme_counts() -> None:
    forwarded = [(b"x-forwarded-proto", b"https")]
    scope = _scope("ide.example.com", "https://ide.example.com")
    scope["headers"] += forwarded
    assert wsauth.origin_allowed(scope, wsauth.ide_origins(scope))
    assert not _ide_allows("ide.example.com", "https://ide.example.com")  # not forwarded
    scope = _scope("ide.example.com", "http://ide.example.com")
    scope["headers"] += forwarded
    assert not wsauth.origin_allowed(scope, wsauth.ide_origins(scope))


@override_settings(PREVIEW_DOMAIN="example.com", IDE_BASE_URL="https://ide.example.com")
def test_the_preview_domain_is_never_an_ide_origin() -> None:
    assert not _ide_allows("ide.example.com", "https://ide.example.com")


@override_settings(IDE_BASE_URL="")
def test_a_private_preview_websocket_comes_from_its_own_host() -> None:
    own = f"http://{HOST}:8000"
    for origin, allowed in (
        (own, True),
        ("http://localhost:8000", False),  # the IDE: it never opens one itself
        (f"http://4000-{HOST[5:]}:8000", False),  # a sibling preview
        (f"http://{HOST}:8001", False),
        (f"https://{HOST}:8000", False),
        ("null", False),
    ):
        assert private.origin_allowed(_scope(f"{HOST}:8000", origin)) is allowed


async def test_the_validator_refuses_foreign_pages_whatever_the_credential() -> None:
    calls: list[str] = []
    sent: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        calls.append(scope["path"])

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    validator = wsauth.WebSocketOriginValidator(app)
    foreign = "http://127.0.0.1:1"
    await validator(_scope("localhost:8000", foreign, path="/cookie"), None, send)
    await validator(_scope("localhost:8000", foreign, query=b"token=t", path="/token"), None, send)
    await validator(_scope("localhost:8000", "http://localhost:8000", path="/ide"), None, send)
    await validator(_scope("localhost:8000", path="/program"), None, send)
    assert calls == ["/ide", "/program"]
    assert sent == [{"type": "websocket.close", "code": 4403}] * 2
