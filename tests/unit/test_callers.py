"""Who is calling (sandboxes/callers.py), without a server: each credential on each
transport, and the rule that no other module works it out."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.test import RequestFactory

from sandboxes import callers
from sandboxes.models import ApiToken

ROOT = Path(__file__).resolve().parents[2]


def _scope(kind: str = "http", query: bytes = b"", **headers: str) -> dict[str, Any]:
    pairs = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return {"type": kind, "method": "POST", "path": "/", "headers": pairs, "query_string": query}


def test_tokens_in_headers_and_websocket_queries() -> None:
    assert callers.bearer_token("Bearer  abc ") == "abc"
    assert callers.bearer_token("bearer abc") == "abc"
    assert callers.bearer_token("Basic abc") is None
    assert callers.bearer_token("Bearer ") is None
    assert callers.scope_token(_scope(authorization="Bearer t1")) == "t1"
    assert callers.scope_token(_scope(authorization="Token t1")) == ""  # malformed
    assert callers.scope_token(_scope()) is None
    # ?token= is for WebSocket upgrades only, and the header wins
    assert callers.scope_token(_scope(query=b"token=q")) is None
    assert callers.scope_token(_scope("websocket", query=b"a=1&token=q")) == "q"
    assert callers.scope_token(_scope("websocket", b"token=q", authorization="Bearer h")) == "h"


def test_cookie_values_keep_every_value_in_order() -> None:
    scope = _scope(cookie="a=1; sessionid=s1;b=2; sessionid=s2; sessionidx=3")
    assert callers.cookie_values(scope, "sessionid") == ["s1", "s2"]
    assert callers.cookie_values(scope, "none") == []


def test_headers_request_leaves_the_body_out() -> None:
    scope = _scope(content_type="application/x-www-form-urlencoded", content_length="9")
    scope["headers"].append((b"host", b"localhost"))
    request = callers.headers_request(scope)
    assert "CONTENT_TYPE" not in request.META and "CONTENT_LENGTH" not in request.META
    assert request.META["HTTP_HOST"] == "localhost"


@pytest.mark.django_db(transaction=True)
async def test_each_credential_names_its_user() -> None:
    user = await sync_to_async(get_user_model().objects.create_user)("cal", password="x")
    row, token = await sync_to_async(ApiToken.issue)(user)

    caller = await callers.scope_caller(_scope(authorization=f"Bearer {token}"))
    assert (caller.user, caller.credential, caller.refusal) == (user, "token", None)
    bad = await callers.scope_caller(_scope("websocket", b"token=nope", cookie="sessionid=x"))
    assert not bad.user.is_authenticated and bad.credential == "token"
    assert bad.refusal is not None and bad.refusal.code == "invalid_token"

    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    await sync_to_async(session.save)()
    cookie = f"sessionid={session.session_key}"
    by_session = await callers.scope_caller(_scope(cookie=cookie))
    assert (by_session.user, by_session.credential) == (user, "session")
    assert (await callers.scope_caller(_scope(cookie=cookie), session=False)).credential is None

    # the API: a session's unsafe request needs the CSRF proof, a token's does not
    post = RequestFactory().post("/api/v1/x", HTTP_COOKIE=cookie)
    refused = await callers.api_caller(post)
    assert refused.refusal is not None and refused.refusal.code == "csrf_failed"
    get = await callers.api_caller(RequestFactory().get("/api/v1/x", HTTP_COOKIE=cookie))
    assert (get.user, get.refusal) == (user, None)
    nobody = await callers.api_caller(RequestFactory().get("/api/v1/x"))
    assert nobody.refusal is not None and nobody.refusal.status == 401
    bearer = RequestFactory().post("/api/v1/x", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert (await callers.api_caller(bearer)).user == user

    # a revoked token stops at once in this process, cache or not
    await sync_to_async(row.delete)()
    assert await callers.user_for_token(token) is None


def test_preview_cookies_are_bound_to_their_host() -> None:
    host = "3000-abcdefghij12-0123456789abcdef.preview.localhost"
    value = callers.preview_cookie(host, 5)
    assert callers.preview_cookie_user(_scope(cookie=f"sandbox_preview={value}"), host) == 5
    assert (
        callers.preview_cookie_user(_scope(cookie=f"sandbox_preview={value}"), "x" + host) is None
    )
    assert callers.signed_user_id({"u": True}) is None and callers.signed_user_id({"u": 3}) == 3


# Who-is-calling primitives: only sandboxes/callers.py may use them.
_CREDENTIAL_NAMES = {"aget_user", "check_csrf", "hash_token", "SESSION_ENGINE", "SessionStore"}
_EXEMPT = {"sandboxes/callers.py", "sandboxes/models.py"}  # models defines hash_token


def test_only_the_callers_module_works_out_who_is_calling() -> None:
    found = []
    for folder in ("ide", "sandboxes"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative in _EXEMPT or "/migrations/" in relative or "/frontend/" in relative:
                continue
            for node in ast.walk(ast.parse(path.read_text(), relative)):
                name = getattr(node, "id", None) or getattr(node, "attr", None)
                if isinstance(node, ast.alias):
                    name = node.name.rpartition(".")[2]
                if name in _CREDENTIAL_NAMES:
                    found.append(f"{relative}:{getattr(node, 'lineno', '?')} {name}")
    assert found == [], "credentials are read in sandboxes/callers.py only:\n" + "\n".join(found)
