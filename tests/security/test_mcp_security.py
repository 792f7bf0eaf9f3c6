"""/mcp is for programs with an API token: a browser's session, a page on another
site, a rebinding host name and other credentials are refused before anything runs."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.integration.test_terminals import _session_cookie
from tests.security.test_refuse_before_read import error_code, raw_request, read_response
from tests.server import LiveServer

MCP_HEADERS = {"Accept": "application/json, text/event-stream"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "attacker", "version": "0"},
    },
}
# What a forged page would send: a tool call that makes a sandbox.
CREATE = {
    "jsonrpc": "2.0",
    "id": 2,
    "method": "tools/call",
    "params": {"name": "create_sandbox", "arguments": {"name": "forged"}},
}


def post(server: LiveServer, body: Any, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        server.url + "/mcp", json=body, headers={**MCP_HEADERS, **headers}, timeout=60
    )


def sandbox_names(server: LiveServer, user: str) -> list[str]:
    with server.client(user) as api:
        return [s["name"] for s in api.get("/sandboxes").json()["sandboxes"]]


@pytest.fixture(scope="module")
def victim(server: LiveServer) -> dict[str, str]:
    """A logged-in browser's cookies (session and CSRF) and the user's token."""
    token = server.token("mcp-victim")
    return {"session": _session_cookie(server, "mcp-victim"), "token": token}


def test_a_token_works_from_a_program(server: LiveServer, victim: dict[str, str]) -> None:
    """The baseline the refusals below differ from by one header each."""
    response = post(server, INITIALIZE, {"Authorization": f"Bearer {victim['token']}"})
    assert response.status_code == 200, response.text
    same_origin = {"Authorization": f"Bearer {victim['token']}", "Origin": server.url}
    assert post(server, INITIALIZE, same_origin).status_code == 200
    # no sessions: no event stream to hold open
    bearer = {**MCP_HEADERS, "Authorization": f"Bearer {victim['token']}"}
    for method in ("GET", "DELETE"):
        response = httpx.request(method, server.url + "/mcp", headers=bearer, timeout=60)
        assert response.status_code == 405
        assert error_code(response.content) == "method_not_allowed"


def test_a_session_cookie_is_refused(server: LiveServer, victim: dict[str, str]) -> None:
    cookie = {"Cookie": f"sessionid={victim['session']}; csrftoken=abc", "X-CSRFToken": "abc"}
    for body in (INITIALIZE, CREATE):
        response = post(server, body, {**cookie, "Origin": server.url})
        assert response.status_code == 401
        assert error_code(response.content) == "token_required"
        assert response.headers["www-authenticate"].startswith("Bearer")
    # a GET (the event stream a page could open with EventSource) too
    response = httpx.get(server.url + "/mcp", headers={**MCP_HEADERS, **cookie}, timeout=60)
    assert response.status_code == 401
    assert "forged" not in sandbox_names(server, "mcp-victim")


def test_a_cross_site_page_is_refused_even_with_a_token(
    server: LiveServer, victim: dict[str, str]
) -> None:
    """A page cannot attach the token itself, but one that learnt it (or a browser
    extension's page) still must not drive sandboxes from another site."""
    token = {"Authorization": f"Bearer {victim['token']}"}
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": f"http://127.0.0.1:{server.port + 1}"},
        {"Sec-Fetch-Site": "cross-site"},
    ):
        response = post(server, CREATE, {**token, **headers})
        assert response.status_code == 403, headers
        assert error_code(response.content) == "cross_origin"
    # a "simple" cross-site request (no preflight): text/plain and the cookie
    forged = httpx.post(
        server.url + "/mcp",
        content=json.dumps(CREATE),
        headers={
            "Content-Type": "text/plain",
            "Origin": "http://evil.example",
            "Cookie": f"sessionid={victim['session']}",
        },
        timeout=60,
    )
    assert forged.status_code in (401, 403)
    assert "forged" not in sandbox_names(server, "mcp-victim")


def test_a_rebound_host_name_is_refused(server: LiveServer, victim: dict[str, str]) -> None:
    """DNS rebinding: evil.example resolving to this server still names evil.example."""
    headers = {"Authorization": f"Bearer {victim['token']}", "Host": f"evil.example:{server.port}"}
    response = post(server, CREATE, headers)
    assert response.status_code == 400
    assert error_code(response.content) == "disallowed_host"


def test_only_a_bearer_header_is_a_credential(server: LiveServer, victim: dict[str, str]) -> None:
    token = victim["token"]
    cases = {
        "query": (f"{server.url}/mcp?token={token}", {}, "token_required"),
        "basic": (server.url + "/mcp", {"Authorization": f"Basic {token}"}, "invalid_token"),
        "wrong": (server.url + "/mcp", {"Authorization": "Bearer sbx_nope"}, "invalid_token"),
        "none": (server.url + "/mcp", {}, "token_required"),
    }
    for case, (url, headers, code) in cases.items():
        response = httpx.post(url, json=CREATE, headers={**MCP_HEADERS, **headers}, timeout=60)
        assert response.status_code == 401, case
        assert error_code(response.content) == code, case
    assert "forged" not in sandbox_names(server, "mcp-victim")


def test_bodies_are_refused_from_their_headers(server: LiveServer, victim: dict[str, str]) -> None:
    """Nothing is read of a body without a token, or of one larger than /mcp takes."""
    for head, status, code in (
        (["POST /mcp HTTP/1.1", f"Content-Length: {1024**3}"], 401, "token_required"),
        (
            [
                "POST /mcp HTTP/1.1",
                f"Authorization: Bearer {victim['token']}",
                "Content-Type: application/json",
                f"Content-Length: {1024**3}",
            ],
            413,
            "payload_too_large",
        ),
    ):
        with raw_request(server, head) as sock:
            got, _, body = read_response(sock)
        assert (got, error_code(body)) == (status, code)
    # and the server answers the next caller as before
    response = post(server, INITIALIZE, {"Authorization": f"Bearer {victim['token']}"})
    assert response.status_code == 200
