"""Cross-site WebSocket hijacking: a page in another tab (another app on another
port of 127.0.0.1, a sibling preview, a sandboxed frame with a ``null`` origin)
must not drive a terminal, an exec, a private preview or a path-based preview with
the victim's cookie. The Origin is compared exactly: scheme, host and port.

Programs authenticate with a token and send no Origin: they keep working.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.integration.preview_apps import WS_APP
from tests.integration.test_preview import expose, start_app, ws_preview
from tests.integration.test_terminals import Screen, _session_cookie, ws_url
from tests.security.test_preview_security import preview_cookie
from tests.server import LiveServer

WS_PORT = 18432


@pytest.fixture(scope="module")
def session(server: LiveServer) -> str:
    """alice's IDE session cookie (she owns the shared sandbox)."""
    return _session_cookie(server, "alice")


@pytest.fixture(scope="module")
def ws_app(api: httpx.Client, shared_sandbox: dict) -> Iterator[dict]:
    start_app(api, shared_sandbox, WS_APP, "origin_ws", WS_PORT)
    yield shared_sandbox
    api.delete(f"/sandboxes/{shared_sandbox['id']}/ports/{WS_PORT}")


def foreign_origins(server: LiveServer) -> list[str]:
    """Pages that are not the IDE, though the browser sends them its cookies."""
    return [
        "http://127.0.0.1:1",  # another local app
        f"http://127.0.0.1:{server.port + 1}",
        f"https://localhost:{server.port}",  # same host and port, other scheme
        f"http://1-abcdefghij12-0123456789abcdef.preview.localhost:{server.port}",
        f"http://preview.localhost:{server.port}",
        "null",  # a sandboxed frame, a data: URL
        "http://evil.example",
    ]


def ide_origins(server: LiveServer) -> list[str]:
    """The IDE's own pages, as the browser tests open them (localhost) or not."""
    return [f"http://localhost:{server.port}", f"http://127.0.0.1:{server.port}"]


def refused(url: str, **kwargs: object) -> int:
    with pytest.raises(InvalidStatus) as caught:
        connect(url, open_timeout=30, **kwargs).close()  # type: ignore[arg-type]
    return caught.value.response.status_code


def test_terminal_needs_the_ide_origin(
    server: LiveServer, session: str, shared_sandbox: dict
) -> None:
    url = ws_url(server, f"/ws/sandboxes/{shared_sandbox['id']}/terminals/origin")
    cookie = {"Cookie": f"sessionid={session}"}
    for origin in foreign_origins(server):
        assert refused(url, additional_headers=cookie, origin=origin) == 403, origin
    for origin in ide_origins(server):
        with connect(url, additional_headers=cookie, origin=origin, open_timeout=60) as ws:
            ws.send(b"echo origin-$((6*7))\n")
            Screen(ws).until(b"origin-42")
    # a program: its token, no Origin (a page elsewhere is refused even with one)
    token_url = f"{url}?token={server.token('alice')}"
    assert refused(token_url, origin="http://127.0.0.1:1") == 403
    with connect(token_url, open_timeout=60) as ws:
        Screen(ws).until(b"origin-42")  # the same terminal, replayed


def test_exec_needs_the_ide_origin(server: LiveServer, session: str, shared_sandbox: dict) -> None:
    url = ws_url(server, f"/ws/sandboxes/{shared_sandbox['id']}/exec")
    cookie = {"Cookie": f"sessionid={session}"}
    for origin in foreign_origins(server):
        assert refused(url, additional_headers=cookie, origin=origin) == 403, origin
    with connect(url, additional_headers=cookie, origin=ide_origins(server)[0]) as ws:
        ws.send(json.dumps({"command": "echo exec-$((6*7))"}))
        screen = Screen(ws)
        while (event := screen.event())["type"] != "exit":
            assert event["type"] in ("stdout", "stderr"), event
        assert event["exit_code"] == 0


def test_private_preview_websocket_needs_its_own_origin(
    server: LiveServer, api: httpx.Client, ws_app: dict, session: str
) -> None:
    url = expose(api, ws_app, WS_PORT, private=True)["url"]
    own = url.rstrip("/")  # http://{port}-{id}-{token}.preview.localhost:{server port}
    cookie = {"Cookie": preview_cookie(server, session, url)}
    for origin in [*foreign_origins(server), *ide_origins(server)]:
        with pytest.raises(InvalidStatus) as caught:
            ws_preview(server, url, additional_headers=cookie, origin=origin)
        assert caught.value.response.status_code == 403, origin
    with ws_preview(server, url, "/live", additional_headers=cookie, origin=own) as conn:
        assert conn.recv() == f"hello /live host=localhost:{WS_PORT}"


def test_path_fallback_websocket_needs_the_ide_origin(
    server: LiveServer, api: httpx.Client, ws_app: dict, session: str
) -> None:
    expose(api, ws_app, WS_PORT)
    url = ws_url(server, f"/preview/{ws_app['id']}/{WS_PORT}/live")
    cookie = {"Cookie": f"sessionid={session}"}
    for origin in foreign_origins(server):
        assert refused(url, additional_headers=cookie, origin=origin) == 403, origin
    for origin in ide_origins(server):
        with connect(url, additional_headers=cookie, origin=origin, open_timeout=60) as conn:
            assert conn.recv() == f"hello /live host=localhost:{WS_PORT}"
    with connect(f"{url}?token={server.token('alice')}", open_timeout=60) as conn:
        assert conn.recv() == f"hello /live host=localhost:{WS_PORT}"
