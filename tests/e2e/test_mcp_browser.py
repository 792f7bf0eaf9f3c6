"""A browser logged in to the IDE cannot drive sandboxes through /mcp: a script on
the IDE's own pages (say, injected) gets 401 with the session cookie, and a page on
another site gets nothing done."""

from __future__ import annotations

import json

from playwright.sync_api import Browser

from tests.integration.test_terminals import _session_cookie
from tests.server import LiveServer

from .conftest import new_context

FORGED = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {"name": "create_sandbox", "arguments": {"name": "forged-by-page"}},
}
ATTACKER = "http://attacker.localhost:9/"


def sandbox_names(server: LiveServer, user: str) -> list[str]:
    with server.client(user) as api:
        return [s["name"] for s in api.get("/sandboxes").json()["sandboxes"]]


def test_a_logged_in_browser_cannot_use_mcp(browser: Browser, server: LiveServer) -> None:
    session = _session_cookie(server, "mcp-browser")
    context = new_context(browser, server.url)
    context.add_cookies([{"name": "sessionid", "value": session, "url": server.url}])
    page = context.new_page()
    try:
        page.goto("/")
        assert "/accounts/login" not in page.url  # logged in
        answer = page.evaluate(
            """async (body) => {
                const r = await fetch("/mcp", {method: "POST", credentials: "include",
                    headers: {"Content-Type": "application/json",
                              "Accept": "application/json, text/event-stream"},
                    body: JSON.stringify(body)});
                return {status: r.status, body: await r.json()};
            }""",
            FORGED,
        )
        assert answer["status"] == 401
        assert answer["body"]["error"]["code"] == "token_required"

        # another site's page, with the cookie attached if the browser would
        context.route(ATTACKER, lambda route: route.fulfill(body="<p>hi</p>"))
        page.goto(ATTACKER)
        outcome = page.evaluate(
            """async ([url, body]) => {
                try {
                    await fetch(url, {method: "POST", mode: "no-cors", credentials: "include",
                        headers: {"Content-Type": "text/plain"}, body: body});
                    return "sent";
                } catch (e) { return "blocked"; }
            }""",
            [server.url + "/mcp", json.dumps(FORGED)],
        )
        assert outcome in ("sent", "blocked")
    finally:
        context.close()
    assert "forged-by-page" not in sandbox_names(server, "mcp-browser")
