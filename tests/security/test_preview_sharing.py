"""Preview share levels as a boundary (docs/api.md, Ports and preview URLs).

A student's sandbox in a course exposes a web app and a WebSocket app. For each
level (private, course, authenticated, public), each kind of client (the owner, the
course's teacher, a classmate, another logged-in user, an anonymous browser) gets
in or is refused, over HTTP and over WebSocket. Every logged-in client holds a valid
preview cookie (issued while the port was shared with everyone logged in), so a
refusal is the level's, not a missing cookie's. Revoke and expiry hold at once on a
second server process on the same database, and old links answer a page that says
why they stopped working.
"""

from __future__ import annotations

import datetime
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

from tests.integration.preview_apps import WS_APP
from tests.integration.test_classroom import STARTER, Class, join, new_class, sh
from tests.server import LiveServer, free_port, running_server

HTTP_PORT, WS_PORT = 18310, 18311
PASSWORD = "pw-Share-Levels-9"
KINDS = ("owner", "teacher", "classmate", "other", "anonymous")
ADMITTED = {
    "private": {"owner", "teacher"},
    "course": {"owner", "teacher", "classmate"},
    "authenticated": {"owner", "teacher", "classmate", "other"},
    "public": set(KINDS),
}


@dataclass
class Client:
    """A browser: its IDE session (None: anonymous) and its preview cookie."""

    session: httpx.Client | None
    cookie: str = ""


@dataclass
class Shared:
    sandbox: str
    owner: httpx.Client  # the owner's API client
    http: dict  # the exposed HTTP port
    ws: dict  # the exposed WebSocket port
    clients: dict[str, Client]


@pytest.fixture(scope="module")
def school(sandbox_image: str) -> Iterator[LiveServer]:
    with running_server("sbxshare", {"CLASSROOM_WARM_POOL": "0"}) as server:
        yield server


@pytest.fixture(scope="module")
def second(school: LiveServer) -> Iterator[LiveServer]:
    """Another server process on the same database (and secret key)."""
    port = free_port()
    other = LiveServer(
        url=f"http://127.0.0.1:{port}",
        port=port,
        env={**school.env, "ALLOW_UNCOORDINATED_SERVERS": "1"},  # beside the first
        var_dir=school.var_dir,
        prefix=school.prefix,
    )
    other.start()
    try:
        yield other
    finally:
        other.stop()


def set_password(server: LiveServer, username: str) -> None:
    server.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User; "
        f"u, _ = User.objects.get_or_create(username={username!r}); "
        f"u.set_password({PASSWORD!r}); u.save()",
    )


def logged_in(server: LiveServer, username: str) -> httpx.Client:
    set_password(server, username)
    browser = httpx.Client(follow_redirects=False, timeout=60)
    browser.get(server.url + "/accounts/login/")
    done = browser.post(
        server.url + "/accounts/login/",
        data={
            "username": username,
            "password": PASSWORD,
            "csrfmiddlewaretoken": browser.cookies["csrftoken"],
        },
        headers={"Referer": server.url + "/accounts/login/"},
    )
    assert done.status_code == 302, done.text
    return browser


def host_of(url: str) -> str:
    return urlsplit(url).netloc


def on_preview(server: LiveServer, url: str, path: str, cookie: str = "") -> httpx.Response:
    """``path`` of the preview ``url``, through ``server``, with the preview cookie."""
    headers = {"Host": host_of(url)}
    if cookie:
        headers["Cookie"] = cookie
    return httpx.get(server.url + path, headers=headers, timeout=60)


def ide_side(server: LiveServer, location: str) -> str:
    return location.replace(f"http://localhost:{server.port}", server.url, 1)


def sign_in(server: LiveServer, client: Client, url: str) -> httpx.Response:
    """The detour a browser takes to a preview that is not public: /preview-auth/ on
    the IDE origin with its session; on a ticket, the cookie is kept. Returns the
    answer of /preview-auth/."""
    assert client.session is not None
    first = on_preview(server, url, "/hello.py")
    assert first.status_code == 302, first.text
    answer = client.session.get(ide_side(server, first.headers["location"]))
    if answer.status_code == 302:
        ticket = urlsplit(answer.headers["location"])
        landed = on_preview(server, url, f"{ticket.path}?{ticket.query}")
        assert landed.status_code == 302 and landed.headers["location"] == "/hello.py"
        set_cookie = landed.headers["set-cookie"]
        # The preview domain is *.localhost: a partitioned cookie that works in a pane.
        assert "SameSite=None" in set_cookie and "Partitioned" in set_cookie
        assert "Secure" in set_cookie and "HttpOnly" in set_cookie
        client.cookie = set_cookie.split(";")[0]
    return answer


def ws_open(server: LiveServer, url: str, cookie: str):  # type: ignore[no-untyped-def]
    sock = socket.create_connection(("127.0.0.1", server.port))
    headers = {"Cookie": cookie} if cookie else {}
    origin = f"http://{host_of(url)}"
    return ws_connect(
        f"ws://{host_of(url)}/",
        sock=sock,
        open_timeout=30,
        origin=origin,  # type: ignore[arg-type]
        additional_headers=headers,
    )


# A server process reuses what it looked up for a preview for half a second; the
# process that made a change forgets it at once. Checks on the other process start
# after that: a change holds there within a second.
OTHER_PROCESS_SEES_IT = 0.6


def share(shared: Shared, port: dict, **body: object) -> dict:
    response = shared.owner.patch(f"/sandboxes/{shared.sandbox}/ports/{port['port']}", json=body)
    assert response.status_code == 200, response.text
    time.sleep(OTHER_PROCESS_SEES_IT)
    return response.json()


def wait_listening(api: httpx.Client, sid: str, ports: set[int]) -> None:
    deadline = time.monotonic() + 30
    while ports - set(api.get(f"/sandboxes/{sid}/ports").json()["listening"]):
        assert time.monotonic() < deadline, "the apps did not start"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def shared(school: LiveServer) -> Shared:
    klass: Class = new_class(school, "teacher-s", "share101")
    own = join(school, "stu-own", klass.invite["token"])
    assert own.status_code == 201, own.text
    mate = join(school, "stu-mate", klass.invite["token"])
    assert mate.status_code == 201, mate.text
    sid = own.json()["sandbox"]
    owner = school.client("stu-own")
    owner.post(f"/sandboxes/{sid}/exec", json={"command": "cat > /tmp/ws.py", "stdin": WS_APP})
    sh(
        owner,
        sid,
        f"setsid -f python3 -m http.server {HTTP_PORT} --directory /workspace >/dev/null 2>&1; "
        f"setsid -f python3 /tmp/ws.py {WS_PORT} >/dev/null 2>&1; sleep 0.5",
    )
    wait_listening(owner, sid, {HTTP_PORT, WS_PORT})
    made = {}
    for port in (HTTP_PORT, WS_PORT):
        response = owner.post(
            f"/sandboxes/{sid}/ports", json={"port": port, "visibility": "authenticated"}
        )
        assert response.status_code == 201, response.text
        made[port] = response.json()
    users = {"owner": "stu-own", "teacher": "teacher-s", "classmate": "stu-mate", "other": "eve"}
    clients = {kind: Client(logged_in(school, name)) for kind, name in users.items()}
    clients["anonymous"] = Client(None)
    out = Shared(sid, owner, made[HTTP_PORT], made[WS_PORT], clients)
    # Shared with everyone logged in: each of them gets a cookie for each port.
    for kind, client in clients.items():
        if client.session is None:
            continue
        for port in (out.http, out.ws):
            cookie_before = client.cookie
            assert sign_in(school, client, port["url"]).status_code == 302, kind
            if port is out.ws:
                client.ws_cookie = client.cookie  # type: ignore[attr-defined]
                client.cookie = cookie_before
    return out


def http_verdict(server: LiveServer, shared: Shared, kind: str) -> str:
    """ "in" (the app's page), "login" (sent to sign in) or the status of the page."""
    client = shared.clients[kind]
    response = on_preview(server, shared.http["url"], "/hello.py", client.cookie)
    if response.status_code == 200:
        assert response.content == STARTER["hello.py"]
        return "in"
    if response.status_code == 302:
        assert "/preview-auth/?next=" in response.headers["location"]
        return "login"
    return str(response.status_code)


def ws_verdict(server: LiveServer, shared: Shared, kind: str) -> str:
    cookie = getattr(shared.clients[kind], "ws_cookie", "")
    try:
        with ws_open(server, shared.ws["url"], cookie) as conn:
            assert conn.recv().startswith("hello /")
            return "in"
    except InvalidStatus as refused:
        return str(refused.response.status_code)


@pytest.mark.parametrize("level", ["private", "course", "authenticated", "public"])
def test_each_level_admits_exactly_its_audience(
    school: LiveServer, shared: Shared, level: str
) -> None:
    for port in (shared.http, shared.ws):
        body = share(shared, port, visibility=level)
        assert body["visibility"] == level and body["private"] is (level != "public")
        # Back to private from a shared level is a revoke.
        assert body["ended"] == ("revoked" if level == "private" else None) and body["audience"]
    for kind in KINDS:
        admitted = kind in ADMITTED[level]
        verdict = http_verdict(school, shared, kind)
        assert (verdict == "in") is admitted, (level, kind, verdict)
        if not admitted and level == "private":  # back from shared: "revoked" page
            assert verdict == "410", (kind, verdict)
        elif not admitted:
            assert verdict == "login", (level, kind, verdict)
            client = shared.clients[kind]
            if client.session is not None:
                # The sign-in tells a session the preview is not theirs: no ticket.
                answer = sign_in(school, Client(client.session), shared.http["url"])
                assert answer.status_code == 404 and "not shared with you" in answer.text
        ws = ws_verdict(school, shared, kind)
        # Over Daphne a refused upgrade is an HTTP 403 before accepting.
        assert ws == ("in" if admitted else "403"), (level, kind, ws)


def test_revoke_holds_within_a_second_on_every_server_process(
    school: LiveServer, second: LiveServer, shared: Shared
) -> None:
    body = share(shared, shared.http, visibility="public")
    code_path = urlsplit(body["share_url"]).path
    assert code_path.startswith("/p/")
    # The short link leads to the preview, on either process.
    for server in (school, second):
        link = httpx.get(server.url + code_path, timeout=60)
        assert link.status_code == 302
        assert host_of(link.headers["location"]).startswith(host_of(body["url"]).split(":")[0])
        assert http_verdict(server, shared, "anonymous") == "in"
    revoked = share(shared, shared.http, visibility="private")
    assert revoked["ended"] == "revoked" and revoked["visibility"] == "private"
    # Within a second, on the other process too: a page that says so, not a bare 404.
    page = on_preview(second, shared.http["url"], "/hello.py")
    assert page.status_code == 410 and "This link was revoked" in page.text
    assert "text/html" in page.headers["content-type"]
    link = httpx.get(second.url + code_path, timeout=60)
    assert link.status_code == 410 and "This link was revoked" in link.text
    # The owner and the teacher still get in; the classmate no longer does.
    assert http_verdict(second, shared, "owner") == "in"
    assert http_verdict(second, shared, "teacher") == "in"
    assert http_verdict(second, shared, "classmate") == "410"
    # WebSockets too: revoked on one process, refused on the other.
    share(shared, shared.ws, visibility="public")
    with ws_open(second, shared.ws["url"], "") as conn:
        assert conn.recv().startswith("hello /")
    share(shared, shared.ws, visibility="private")
    with pytest.raises(InvalidStatus):
        ws_open(second, shared.ws["url"], "")


def test_an_open_websocket_ends_when_its_share_does(
    school: LiveServer, second: LiveServer, shared: Shared
) -> None:
    """A socket opened on one process while public is closed (4410) once the owner
    revokes on the other; the owner's own socket stays open."""
    share(shared, shared.ws, visibility="public")
    owner_cookie = shared.clients["owner"].ws_cookie  # type: ignore[attr-defined]
    with (
        ws_open(second, shared.ws["url"], "") as stranger,
        ws_open(second, shared.ws["url"], owner_cookie) as owner,
    ):
        assert stranger.recv().startswith("hello /") and owner.recv().startswith("hello /")
        share(shared, shared.ws, visibility="private")
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                stranger.recv(timeout=30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4410
        owner.send("still here")
        assert owner.recv(timeout=30) == "still here"


def test_expiry_holds_on_every_server_process(
    school: LiveServer, second: LiveServer, shared: Shared
) -> None:
    body = share(shared, shared.http, visibility="public", expires_in=2)
    expires = datetime.datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert http_verdict(second, shared, "anonymous") == "in"
    while datetime.datetime.now(datetime.UTC) < expires:
        time.sleep(0.05)
    page = on_preview(second, shared.http["url"], "/hello.py")
    assert page.status_code == 410 and "This link has expired" in page.text
    listed = school.client("stu-own").get(f"/sandboxes/{shared.sandbox}/ports").json()
    entry = next(p for p in listed["exposed"] if p["port"] == HTTP_PORT)
    assert entry["visibility"] == "private" and entry["ended"] == "expired"
    assert http_verdict(school, shared, "owner") == "in"  # the owner still gets in
    # Sharing again without an end brings it back.
    share(shared, shared.http, visibility="public", expires_in=None)
    assert http_verdict(second, shared, "anonymous") == "in"


def test_links_that_never_were_get_a_page(school: LiveServer, shared: Shared) -> None:
    for code in ("zzzz-zzzz-zzzz", "not-a-code", "ABCD-2345-6789x", "%2e%2e"):
        response = httpx.get(f"{school.url}/p/{code}", timeout=60)
        assert response.status_code == 404 and "No such link" in response.text
        assert "location" not in response.headers
    # Exposing again makes a new token and a new code: the old link is dead.
    old = share(shared, shared.http, visibility="public")
    made = shared.owner.post(
        f"/sandboxes/{shared.sandbox}/ports", json={"port": HTTP_PORT, "visibility": "public"}
    )
    assert made.status_code == 201
    fresh = made.json()
    assert fresh["share_url"] != old["share_url"] and fresh["token"] != old["token"]
    gone = httpx.get(school.url + urlsplit(old["share_url"]).path, timeout=60)
    assert gone.status_code == 404
    assert on_preview(school, old["url"], "/hello.py").status_code == 404
    shared.http.update(fresh)
    for client in shared.clients.values():
        client.cookie = ""  # bound to the old host


def test_a_cookie_for_one_preview_opens_no_other(school: LiveServer, shared: Shared) -> None:
    """The owner's cookie of the WebSocket port does not open the HTTP port, nor
    does a forged one: the visitor is a stranger, told the link was revoked."""
    share(shared, shared.http, visibility="private")
    owner = shared.clients["owner"]
    for cookie in (owner.ws_cookie, "sandbox_preview=x:y:z"):  # type: ignore[attr-defined]
        refused = on_preview(school, shared.http["url"], "/hello.py", cookie)
        assert refused.status_code == 410 and "This link was revoked" in refused.text
        assert STARTER["hello.py"].decode() not in refused.text


def test_sharing_needs_the_owner_and_good_input(school: LiveServer, shared: Shared) -> None:
    base = f"/sandboxes/{shared.sandbox}/ports"
    teacher = school.client("teacher-s")
    refused = teacher.patch(f"{base}/{HTTP_PORT}", json={"visibility": "public"})
    assert refused.status_code in (403, 404) and refused.json()["error"]["code"]
    # ...who may still see the link and its QR code.
    qr = teacher.get(f"{base}/{HTTP_PORT}/qr")
    assert qr.status_code == 200 and qr.headers["content-type"] == "image/svg+xml"
    assert qr.text.startswith('<svg xmlns="http://www.w3.org/2000/svg"')  # an <img> shows it
    assert school.client("eve").get(f"{base}/{HTTP_PORT}/qr").status_code == 404
    owner = shared.owner
    cases = [
        ({"visibility": "friends"}, "invalid_request"),
        ({"visibility": "private", "expires_in": 60}, "invalid_expiry"),
        ({"visibility": "public", "expires_in": 0}, "invalid_request"),
        ({"visibility": "public", "expires_in": "soon"}, "invalid_request"),
        ({}, "bad_request"),
        ({"visibility": "public", "extra": 1}, "invalid_request"),
    ]
    for body, code in cases:
        response = owner.patch(f"{base}/{HTTP_PORT}", json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["code"] == code, (body, response.text)
    missing = owner.patch(f"{base}/9", json={"visibility": "public"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert owner.get(f"{base}/9/qr").status_code == 404
    # POST: no visibility is public, as it always was; private: true is private.
    plain = owner.post(base, json={"port": WS_PORT})
    assert plain.status_code == 201 and plain.json()["visibility"] == "public"
    old_style = owner.post(base, json={"port": WS_PORT, "private": True})
    assert old_style.json()["visibility"] == "private" and old_style.json()["private"] is True
    clash = owner.post(base, json={"port": WS_PORT, "private": True, "visibility": "public"})
    assert clash.status_code == 400 and clash.json()["error"]["code"] == "invalid_visibility"
    timed = owner.post(base, json={"port": WS_PORT, "visibility": "course", "expires_in": 600})
    assert timed.status_code == 201 and timed.json()["expires_at"]
    # A PATCH without expires_in keeps the end; null removes it.
    kept = owner.patch(f"{base}/{WS_PORT}", json={"visibility": "course"}).json()
    assert kept["expires_at"] == timed.json()["expires_at"]
    cleared = owner.patch(f"{base}/{WS_PORT}", json={"expires_in": None}).json()
    assert cleared["expires_at"] is None and cleared["visibility"] == "course"
