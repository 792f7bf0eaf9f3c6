"""Preview URLs (docs/api.md, Ports and preview URLs) against real sandboxes.

Test programs (tests/integration/preview_apps.py) run inside the sandbox; the tests
reach them as a browser would, through the live server with the preview Host.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from tests.integration.preview_apps import HTTP_APP, WS_APP
from tests.server import LiveServer

HTTP_PORT = 18080
WS_PORT = 18765


def run(api: httpx.Client, sandbox: dict, command: str, stdin: str | None = None) -> dict:
    body: dict[str, object] = {"command": command}
    if stdin is not None:
        body["stdin"] = stdin
    response = api.post(f"/sandboxes/{sandbox['id']}/exec", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def start_app(api: httpx.Client, sandbox: dict, source: str, name: str, port: int) -> None:
    run(api, sandbox, f"cat > /tmp/{name}.py", stdin=source)
    # setsid: a program left running by exec is ended with the exec's process group
    # (the pause lets the forked child leave the group before the exec ends)
    command = f"setsid -f python3 /tmp/{name}.py {port} > /tmp/{name}.log 2>&1; sleep 0.5"
    run(api, sandbox, command)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        listening = api.get(f"/sandboxes/{sandbox['id']}/ports").json()["listening"]
        if port in listening:
            return
        time.sleep(0.2)
    raise AssertionError(run(api, sandbox, f"cat /tmp/{name}.log")["stdout"])


def expose(api: httpx.Client, sandbox: dict, port: int, **extra: object) -> dict:
    response = api.post(f"/sandboxes/{sandbox['id']}/ports", json={"port": port, **extra})
    assert response.status_code == 201, response.text
    return response.json()


def host_of(url: str) -> str:
    return urlsplit(url).netloc


def preview(server: LiveServer, url: str, **kwargs: object) -> httpx.Client:
    """A client that talks to the live server with the preview URL's Host."""
    return httpx.Client(
        base_url=server.url,
        headers={"Host": host_of(url)},
        timeout=120,
        **kwargs,  # type: ignore[arg-type]
    )


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def apps(api: httpx.Client, shared_sandbox: dict) -> dict:
    start_app(api, shared_sandbox, HTTP_APP, "preview_http", HTTP_PORT)
    start_app(api, shared_sandbox, WS_APP, "preview_ws", WS_PORT)
    return shared_sandbox


@pytest.fixture
def exposed(api: httpx.Client, apps: dict) -> dict:
    return expose(api, apps, HTTP_PORT, name="web")


@pytest.fixture
def web(server: LiveServer, exposed: dict) -> Iterator[httpx.Client]:
    with preview(server, exposed["url"]) as client:
        yield client


# ------------------------------------------------------------------------- the API


def test_expose_list_unexpose(server: LiveServer, api: httpx.Client, apps: dict) -> None:
    sid = apps["id"]
    first = expose(api, apps, 18081, name="docs")
    assert first["port"] == 18081 and first["name"] == "docs" and first["private"] is False
    assert len(first["token"]) == 16 and first["token"].isalnum() and first["token"].islower()
    assert first["url"] == (f"http://18081-{sid}-{first['token']}.preview.localhost:{server.port}/")
    listed = api.get(f"/sandboxes/{sid}/ports").json()
    assert HTTP_PORT in listed["listening"] and WS_PORT in listed["listening"]
    assert len(listed["listening"]) == len(set(listed["listening"]))
    assert any(p["port"] == 18081 and p["url"] == first["url"] for p in listed["exposed"])
    sandbox = api.get(f"/sandboxes/{sid}").json()
    assert any(p["port"] == 18081 and p["url"] == first["url"] for p in sandbox["ports"])

    assert api.delete(f"/sandboxes/{sid}/ports/18081").status_code == 204
    missing = api.delete(f"/sandboxes/{sid}/ports/18081")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert all(p["port"] != 18081 for p in api.get(f"/sandboxes/{sid}").json()["ports"])


def test_bad_input_is_a_clear_error(api: httpx.Client, apps: dict) -> None:
    for body in ({"port": 0}, {"port": 70000}, {"port": "80"}, {}, {"port": 80, "x": 1}):
        response = api.post(f"/sandboxes/{apps['id']}/ports", json=body)
        assert response.status_code == 400, (body, response.text)
        assert "error" in response.json()
    other = httpx.Client(base_url=api.base_url, headers={"Authorization": "Bearer nope"})
    assert other.get(f"/sandboxes/{apps['id']}/ports").status_code == 401


# ------------------------------------------------------------------------- HTTP


def test_every_method_with_body_query_and_headers(web: httpx.Client, exposed: dict) -> None:
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        body = f"body of {method} ✓".encode() if method != "GET" else b""
        response = web.request(
            method,
            "/echo/a%20b/c?x=1&y=%C3%A9&x=2",
            content=body,
            headers={"X-Custom": "v1", "Accept": "application/json"},
        )
        assert response.status_code == 200, response.text
        data = response.json()
        headers = dict(data["headers"])
        assert data["method"] == method
        assert data["path"] == "/echo/a%20b/c" and data["query"] == "x=1&y=%C3%A9&x=2"
        assert data["body"].encode("latin-1") == body and data["size"] == len(body)
        assert headers["x-custom"] == "v1"
        assert headers["host"] == f"localhost:{HTTP_PORT}"
        assert headers["x-forwarded-host"] == host_of(exposed["url"])
        assert headers["x-forwarded-proto"] == "http"
        assert headers["x-forwarded-for"] == "127.0.0.1"
        assert (
            response.headers["x-app"] == "yes" and response.headers["set-cookie"] == "app=1; Path=/"
        )


def test_hop_by_hop_headers_are_not_forwarded(web: httpx.Client) -> None:
    response = web.get(
        "/echo",
        headers={
            "Connection": "keep-alive, X-Secret-Hop",
            "X-Secret-Hop": "gone",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Proxy-Authorization": "Basic eA==",
            "X-Forwarded-For": "6.6.6.6",
        },
    )
    headers = dict(response.json()["headers"])
    for name in ("x-secret-hop", "keep-alive", "te", "proxy-authorization"):
        assert name not in headers
    assert headers["x-forwarded-for"] == "127.0.0.1"  # not the client's forgery


def test_ide_cookies_are_stripped(web: httpx.Client) -> None:
    response = web.get(
        "/echo",
        headers={
            "Cookie": "sessionid=secret1; theme=dark; csrftoken=secret2; "
            "sandbox_preview=secret3; lang=fr"
        },
    )
    cookie = dict(response.json()["headers"])["cookie"]
    assert cookie == "theme=dark; lang=fr"
    only_ide = web.get("/echo", headers={"Cookie": "sessionid=s; csrftoken=c"})
    assert "cookie" not in dict(only_ide.json()["headers"])


def test_status_redirect_head_chunked(web: httpx.Client) -> None:
    redirect = web.get("/redirect")
    assert redirect.status_code == 302 and redirect.headers["location"] == "/echo?from=redirect"
    for status in (201, 204, 404, 418, 500, 503):
        response = web.get(f"/status/{status}")
        assert response.status_code == status
    head = web.head("/download?size=12345")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == "12345"
    chunked = web.get("/chunked")
    assert chunked.text == "part0;part1;part2;"


def test_sse_chunks_arrive_live(web: httpx.Client) -> None:
    arrivals = []
    with web.stream("GET", "/sse") as response:
        assert response.headers["content-type"] == "text/event-stream"
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append((line, time.monotonic()))
    assert [line for line, _ in arrivals] == ["data: event0", "data: event1", "data: event2"]
    assert arrivals[-1][1] - arrivals[0][1] > 0.8  # streamed, not buffered


def test_large_download_and_upload_keep_server_memory_flat(
    server: LiveServer, web: httpx.Client
) -> None:
    assert server.process is not None
    pid = server.process.pid
    size = 200 * 1024 * 1024
    web.get("/download?size=1000")  # warm up
    before = rss_kb(pid)
    peak = before
    received = 0
    with web.stream("GET", f"/download?size={size}") as response:
        assert response.headers["content-length"] == str(size)
        for chunk in response.iter_raw(1024 * 1024):
            received += len(chunk)
            if received % (16 * 1024 * 1024) < len(chunk):
                peak = max(peak, rss_kb(pid))
                time.sleep(0.05)  # a slow reader: the proxy must wait, not buffer
    assert received == size
    assert peak - before < 64 * 1024, f"server RSS grew by {(peak - before) // 1024} MB"

    upload_size = 200 * 1024 * 1024
    digest = hashlib.sha256()
    before = peak = rss_kb(pid)

    def body() -> Iterator[bytes]:
        nonlocal peak
        block = bytes(range(256)) * 256
        for i in range(upload_size // len(block)):
            digest.update(block)
            if i % 256 == 0:
                peak = max(peak, rss_kb(pid))
            yield block

    response = web.post("/upload", content=body(), headers={"Content-Length": str(upload_size)})
    assert response.status_code == 200
    assert response.json()["size"] == upload_size
    assert response.json()["sha256"] == digest.hexdigest()
    peak = max(peak, rss_kb(pid))
    assert peak - before < 64 * 1024, f"server RSS grew by {(peak - before) // 1024} MB"


# ------------------------------------------------------------------------- WebSocket


def ws_preview(server: LiveServer, url: str, path: str = "/", **kwargs: object):  # type: ignore[no-untyped-def]
    sock = socket.create_connection(("127.0.0.1", server.port))
    return ws_connect(f"ws://{host_of(url)}{path}", sock=sock, open_timeout=30, **kwargs)


def test_websocket_echo_text_binary_subprotocol(
    server: LiveServer, api: httpx.Client, apps: dict
) -> None:
    url = expose(api, apps, WS_PORT)["url"]
    with ws_preview(server, url, "/socket?room=1", subprotocols=["chat.v9", "chat.v2"]) as conn:
        assert conn.subprotocol == "chat.v2"
        assert conn.recv() == f"hello /socket?room=1 host=localhost:{WS_PORT}"
        conn.send("text ✓")
        assert conn.recv() == "text ✓"
        conn.send(b"\x00\x01binary\xff")
        assert conn.recv() == b"\x00\x01binary\xff"
        big = bytes(300_000)
        conn.send(big)
        assert conn.recv() == big
        conn.send("close-4321")
        with pytest.raises(Exception):  # noqa: B017 - the app closed the socket
            conn.recv()
        assert conn.close_code == 4321


def test_websocket_needs_the_right_token(server: LiveServer, api: httpx.Client, apps: dict) -> None:
    url = expose(api, apps, WS_PORT)["url"]
    wrong = url.replace(urlsplit(url).netloc.split("-")[2][:16], "a" * 16)
    with pytest.raises(InvalidStatus):
        ws_preview(server, wrong)


# ------------------------------------------------------------------------- errors


def test_revoked_and_reexposed_tokens(server: LiveServer, api: httpx.Client, apps: dict) -> None:
    first = expose(api, apps, HTTP_PORT)
    with preview(server, first["url"]) as old:
        assert old.get("/echo").status_code == 200
        second = expose(api, apps, HTTP_PORT)
        assert second["token"] != first["token"] and second["url"] != first["url"]
        assert old.get("/echo").status_code == 404
        with preview(server, second["url"]) as new:
            assert new.get("/echo").status_code == 200
            assert api.delete(f"/sandboxes/{apps['id']}/ports/{HTTP_PORT}").status_code == 204
            gone = new.get("/echo")
            assert gone.status_code == 404 and "not valid" in gone.text
    expose(api, apps, HTTP_PORT)  # leave it exposed for the others


def test_unknown_hosts_and_wrong_tokens_are_404(
    server: LiveServer, exposed: dict, apps: dict
) -> None:
    sid = apps["id"]
    hosts = [
        "preview.localhost",
        "nothing.preview.localhost",
        f"{HTTP_PORT}-{sid}-{'0' * 16}.preview.localhost",
        f"18099-{sid}-{exposed['token']}.preview.localhost",
        f"99999-{sid}-{exposed['token']}.preview.localhost",
        f"{HTTP_PORT}-zzzzzzzzzzzz-{exposed['token']}.preview.localhost",
    ]
    for host in hosts:
        response = httpx.get(server.url + "/echo", headers={"Host": host})
        assert response.status_code == 404, host
        assert response.headers["content-type"].startswith("text/html")
    upper = httpx.get(server.url + "/echo", headers={"Host": host_of(exposed["url"]).upper()})
    assert upper.status_code == 200


def test_nothing_listening_is_a_readable_502(
    server: LiveServer, api: httpx.Client, apps: dict
) -> None:
    url = expose(api, apps, 18099)["url"]
    with preview(server, url) as client:
        response = client.get("/<script>alert(1)</script>?q=<b>")
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert "Nothing is listening" in response.text and "18099" in response.text
    assert "<script>" not in response.text and "<b>" not in response.text


def test_error_pages_escape_what_they_show(server: LiveServer) -> None:
    response = httpx.get(
        server.url + "/<script>x</script>",
        headers={"Host": "<script>x</script>.preview.localhost"},
    )
    assert response.status_code in (400, 404)
    assert "<script>" not in response.text


def test_sleeping_sandbox_is_woken_by_a_preview(server: LiveServer, api: httpx.Client) -> None:
    created = api.post("/sandboxes", json={"name": "preview-sleepy"})
    assert created.status_code in (200, 201), created.text
    sandbox = created.json()
    start_app(api, sandbox, HTTP_APP, "preview_http", 18080)
    url = expose(api, sandbox, 18080)["url"]
    slept = api.post(f"/sandboxes/{sandbox['id']}/sleep")
    assert slept.json()["status"] == "sleeping"
    with preview(server, url) as client:
        response = client.get("/echo")
        # woken: a paused sandbox kept its program (200); a stopped one lost it, and
        # the preview says nothing listens (502)
        assert response.status_code in (200, 502), response.text
        assert api.get(f"/sandboxes/{sandbox['id']}").json()["status"] == "running"
        if response.status_code == 502:
            assert "Nothing is listening" in response.text
            start_app(api, sandbox, HTTP_APP, "preview_http", 18080)
        assert client.get("/echo").json()["method"] == "GET"
        # asleep again behind a kept-alive connection to the app: still woken
        assert api.post(f"/sandboxes/{sandbox['id']}/sleep").json()["status"] == "sleeping"
        started = time.monotonic()
        again = client.get("/echo")
        assert again.status_code in (200, 502), again.text
        assert time.monotonic() - started < 20
        deadline = time.monotonic() + 10  # the wake may still be writing its status
        while api.get(f"/sandboxes/{sandbox['id']}").json()["status"] != "running":
            assert time.monotonic() < deadline, "the preview did not wake the sandbox"
            time.sleep(0.1)
    api.delete(f"/sandboxes/{sandbox['id']}")


# ------------------------------------------------------------------------- private ports


def _make_user(server: LiveServer, username: str, password: str) -> None:
    server.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User; "
        f"u, _ = User.objects.get_or_create(username={username!r}); "
        f"u.is_staff = True; u.set_password({password!r}); u.save()",
    )


def _login(server: LiveServer, browser: httpx.Client, username: str, password: str) -> None:
    browser.get(server.url + "/admin/login/")
    csrf = browser.cookies["csrftoken"]
    browser.post(
        server.url + "/admin/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": csrf},
        headers={"Referer": server.url + "/admin/login/"},
    )
    assert "sessionid" in browser.cookies


def test_private_port_needs_the_owners_login(server: LiveServer, apps: dict) -> None:
    # alice owns the shared sandbox; give her a password to log in with
    _make_user(server, "alice", "pw-alice-123")
    with server.client("alice") as alice_api:
        url = expose(alice_api, apps, HTTP_PORT, private=True)["url"]
    preview_host = host_of(url)
    try:
        with httpx.Client(follow_redirects=False, timeout=60) as browser:
            first = browser.get(server.url + "/echo?a=1", headers={"Host": preview_host})
            assert first.status_code == 302
            auth_url = first.headers["location"]
            assert auth_url.startswith(f"http://localhost:{server.port}/preview-auth/?next=")
            assert parse_qs(urlsplit(auth_url).query)["next"] == [f"{url}echo?a=1"]

            # anonymous: sent to log in, never to the preview
            anonymous = browser.get(
                auth_url.replace(f"http://localhost:{server.port}", server.url, 1)
            )
            assert anonymous.status_code == 302
            assert "ticket" not in anonymous.headers["location"]

            # a forged or foreign ticket is refused
            forged = browser.get(
                server.url + "/__sandbox_preview_auth?ticket=x", headers={"Host": preview_host}
            )
            assert forged.status_code == 403 and "set-cookie" not in forged.headers

            _login(server, browser, "alice", "pw-alice-123")
            back = browser.get(auth_url.replace(f"http://localhost:{server.port}", server.url, 1))
            assert back.status_code == 302
            ticket_url = back.headers["location"]
            assert ticket_url.startswith(f"{url}__sandbox_preview_auth?ticket=")
            landed = browser.get(
                server.url + urlsplit(ticket_url).path + "?" + urlsplit(ticket_url).query,
                headers={"Host": preview_host},
            )
            assert landed.status_code == 302 and landed.headers["location"] == "/echo?a=1"
            set_cookie = landed.headers["set-cookie"]
            assert set_cookie.startswith("sandbox_preview=")
            # *.localhost counts as secure: partitioned, so it also works in the IDE's pane
            assert "HttpOnly" in set_cookie and "SameSite=None" in set_cookie
            assert "Secure" in set_cookie and "Partitioned" in set_cookie
            assert "Domain" not in set_cookie and "sessionid" not in set_cookie
            cookie = set_cookie.split(";")[0]
            ok = browser.get(
                server.url + "/echo?a=1", headers={"Host": preview_host, "Cookie": cookie}
            )
            assert ok.status_code == 200 and ok.json()["query"] == "a=1"
            assert "cookie" not in dict(ok.json()["headers"])  # not passed to the app
            # the cookie is bound to its host: another port's preview does not accept it
            ws_url = expose(server.client("alice"), apps, WS_PORT, private=True)["url"]
            other = browser.get(
                server.url + "/", headers={"Host": host_of(ws_url), "Cookie": cookie}
            )
            assert other.status_code == 302

        # another logged-in user gets no ticket for alice's preview
        _make_user(server, "mallory", "pw-mallory-123")
        with httpx.Client(follow_redirects=False, timeout=60) as mallory:
            _login(server, mallory, "mallory", "pw-mallory-123")
            refused = mallory.get(
                auth_url.replace(f"http://localhost:{server.port}", server.url, 1)
            )
            assert refused.status_code == 404 and "ticket" not in refused.headers.get(
                "location", ""
            )
    finally:
        with server.client("alice") as alice_api:
            expose(alice_api, apps, HTTP_PORT)
            expose(alice_api, apps, WS_PORT)


# ------------------------------------------------------------------------- path fallback


def test_path_based_fallback_is_owner_only(
    server: LiveServer, api: httpx.Client, apps: dict, exposed: dict
) -> None:
    sid = apps["id"]
    response = api.get(server.url + f"/preview/{sid}/{HTTP_PORT}/echo?z=9")
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["path"] == "/echo" and data["query"] == "z=9"
    assert "authorization" not in dict(data["headers"])  # the IDE token stays here
    assert response.headers["content-security-policy"].startswith("sandbox")
    post = api.post(server.url + f"/preview/{sid}/{HTTP_PORT}/echo", content=b"abc")
    assert post.json()["body"] == "abc"
    bare = api.get(server.url + f"/preview/{sid}/{HTTP_PORT}", follow_redirects=False)
    assert bare.status_code == 302 and bare.headers["location"] == f"/preview/{sid}/{HTTP_PORT}/"

    assert httpx.get(server.url + f"/preview/{sid}/{HTTP_PORT}/echo").status_code == 401
    with server.client("bob") as bob:
        assert bob.get(server.url + f"/preview/{sid}/{HTTP_PORT}/echo").status_code == 404
    assert api.get(server.url + f"/preview/{sid}/18098/echo").status_code == 404


def test_concurrent_previews(web: httpx.Client) -> None:
    errors: list[str] = []

    def worker(i: int) -> None:
        for j in range(10):
            response = web.get(f"/echo?i={i}&j={j}")
            if response.json()["query"] != f"i={i}&j={j}":
                errors.append(response.text)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_json_response_is_untouched(web: httpx.Client) -> None:
    response = web.post("/echo", json={"a": [1, 2]})
    assert json.loads(response.json()["body"]) == {"a": [1, 2]}


def test_private_websocket_needs_the_cookie(
    server: LiveServer, api: httpx.Client, apps: dict
) -> None:
    url = expose(api, apps, WS_PORT, private=True)["url"]
    try:
        with pytest.raises(InvalidStatus):
            ws_preview(server, url)
    finally:
        expose(api, apps, WS_PORT)
    with ws_preview(server, expose(api, apps, WS_PORT)["url"]) as conn:
        assert conn.recv().startswith("hello /")


def test_app_restart_behind_kept_alive_tunnels(
    server: LiveServer, api: httpx.Client, apps: dict, web: httpx.Client
) -> None:
    for _ in range(3):  # leaves idle keep-alive tunnels in the server's pool
        assert web.get("/echo").status_code == 200
    run(api, apps, f"pkill -f 'preview_http[.]py {HTTP_PORT}'; sleep 0.3")
    assert web.get("/echo").status_code == 502
    start_app(api, apps, HTTP_APP, "preview_http", HTTP_PORT)
    for _ in range(3):
        assert web.get("/echo").json()["method"] == "GET"
