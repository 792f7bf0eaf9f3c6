"""Previews cannot reach beyond their own host: the cookies an app sets, the preview
cookie a request carries, where the preview sign-in sends the browser, and what the
IDE's session lets other pages do through the path-based fallback.

Everything goes through the live server as a browser (or an attacker's page) would:
HTTP and WebSockets on loopback, the preview Host in the request.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.integration.test_preview import expose, host_of, start_app
from tests.integration.test_terminals import _session_cookie
from tests.server import LiveServer

COOKIE_PORT = 18431

# Answers any method with "METHOD <body size>", and one Set-Cookie header per
# ?set= parameter: the app a tenant controls.
COOKIE_APP = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_any(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        reply = f"{self.command} {len(body)}".encode()
        self.send_response(200)
        for value in parse_qs(urlsplit(self.path).query).get("set", []):
            self.send_header("Set-Cookie", value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_GET = do_POST = do_PUT = do_DELETE = handle_any

ThreadingHTTPServer.allow_reuse_address = True
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""

TOSSED = [
    "toss=1; Domain=preview.localhost; Path=/",
    "parent=1; domain=localhost",
    "sessionid=attacker; Path=/",
    "csrftoken=attacker; Path=/",
    "sandbox_preview=attacker; Path=/",
    "=sessionid=attacker",  # nameless: the browser sends it back as sessionid=attacker
    "kept=1; Path=/; HttpOnly",
]


@pytest.fixture(scope="module")
def cookie_app(api: httpx.Client, shared_sandbox: dict) -> dict:
    start_app(api, shared_sandbox, COOKIE_APP, "cookie_app", COOKIE_PORT)
    return shared_sandbox


@pytest.fixture(scope="module")
def alice_session(server: LiveServer) -> str:
    """The value of alice's (the shared sandbox's owner's) IDE session cookie."""
    return _session_cookie(server, "alice")


@pytest.fixture
def private_url(api: httpx.Client, cookie_app: dict) -> Iterator[str]:
    yield expose(api, cookie_app, COOKIE_PORT, private=True)["url"]
    expose(api, cookie_app, COOKIE_PORT)


def preview_cookie(server: LiveServer, session: str, url: str) -> str:
    """``sandbox_preview=…`` for a private preview URL, through the sign-in flow with
    the IDE session ``session``, as the browser would get it."""
    with httpx.Client(base_url=server.url, follow_redirects=False, timeout=60) as browser:
        ticket = browser.get(
            "/preview-auth/", params={"next": url}, headers={"Cookie": f"sessionid={session}"}
        )
        assert ticket.status_code == 302, ticket.text
        location = urlsplit(ticket.headers["location"])
        assert location.netloc == host_of(url)
        landed = browser.get(f"{location.path}?{location.query}", headers={"Host": host_of(url)})
        assert landed.status_code == 302, landed.text
        return landed.headers["set-cookie"].split(";")[0]


def where_the_browser_goes(base: str, location: str) -> tuple[str, str | None, int | None]:
    """(scheme, host, port) a browser on ``base`` goes to for ``location``: it drops
    tabs and newlines and reads backslashes as slashes in http(s) URLs."""
    for char in "\t\r\n":
        location = location.replace(char, "")
    parts = urlsplit(urljoin(base, location.strip().replace("\\", "/")))
    return parts.scheme, parts.hostname, parts.port or {"https": 443}.get(parts.scheme, 80)


def test_app_cookies_stay_on_the_preview_host(
    server: LiveServer, api: httpx.Client, cookie_app: dict
) -> None:
    url = expose(api, cookie_app, COOKIE_PORT)["url"]
    with httpx.Client(base_url=server.url, headers={"Host": host_of(url)}) as tab:
        answer = tab.get("/", params=[("set", value) for value in TOSSED])
    assert answer.status_code == 200 and answer.text == "GET 0"
    set_cookies = answer.headers.get_list("set-cookie")
    assert set_cookies == ["toss=1; Path=/", "parent=1", "kept=1; Path=/; HttpOnly"]

    # The path fallback serves the app on the IDE's own host: the same rules there.
    fallback = api.get(
        server.url + f"/preview/{cookie_app['id']}/{COOKIE_PORT}/",
        params=[("set", value) for value in TOSSED],
    )
    assert fallback.status_code == 200
    assert fallback.headers.get_list("set-cookie") == set_cookies


def test_every_preview_cookie_value_is_tried(
    server: LiveServer, alice_session: str, private_url: str
) -> None:
    cookie = preview_cookie(server, alice_session, private_url)
    with httpx.Client(
        base_url=server.url, headers={"Host": host_of(private_url)}, follow_redirects=False
    ) as tab:
        # a stale or tossed value listed first must not hide the valid one
        both = tab.get("/", headers={"Cookie": f"sandbox_preview=stale; {cookie}"})
        assert both.status_code == 200 and both.text == "GET 0"
        stale = tab.get("/", headers={"Cookie": "sandbox_preview=stale; sandbox_preview=x"})
        assert stale.status_code == 302 and "/preview-auth/" in stale.headers["location"]


def _sign_in(server: LiveServer, session: str, next_url: str) -> tuple[str, str, int | None]:
    """Where the browser of a signed-in owner ends up after ``/preview-auth/?next=``."""
    with httpx.Client(base_url=server.url, follow_redirects=False, timeout=60) as browser:
        first = browser.get(
            "/preview-auth/",
            params={"next": next_url},
            headers={"Cookie": f"sessionid={session}"},
        )
        if first.status_code != 302:
            assert 400 <= first.status_code < 500, first.text
            return "refused", None, None
        ticket_url = first.headers["location"]
        scheme, host, port = where_the_browser_goes(server.url, ticket_url)
        if host is None or not host.endswith(".preview.localhost") or port != server.port:
            return scheme, host, port  # the ticket itself went elsewhere
        location = urlsplit(ticket_url)
        landed = browser.get(
            f"{location.path}?{location.query}",
            headers={"Host": location.netloc},
        )
        assert landed.status_code == 302, landed.text
        return where_the_browser_goes(ticket_url, landed.headers["location"])


def test_preview_sign_in_is_no_open_redirect(
    server: LiveServer, alice_session: str, private_url: str
) -> None:
    host = host_of(private_url)  # name:port
    name = host.rpartition(":")[0]
    home = ("http", name, server.port)
    assert _sign_in(server, alice_session, private_url + "echo?a=1") == home
    for attack in (
        f"http://{host}/\\evil.example",
        f"http://{host}/\\/evil.example",
        f"http://{host}//evil.example/",
        f"http://{host}/%09/evil.example",
        f"http://{name}:{server.port + 1}/",  # another program on another port
        f"https://{host}/",
        "https://evil.example/",
        f"http://evil.example/?{host}",
        f"http://evil.example\\@{host}/",
        f"//{host}/",
        "/\\evil.example",
    ):
        where = _sign_in(server, alice_session, attack)
        assert where in (home, ("refused", None, None)), (attack, where)


def test_a_signed_ticket_cannot_send_the_browser_away(server: LiveServer, private_url: str) -> None:
    """Even a ticket the server signed (here with its own key) for a path that would
    leave the host lands on the preview's root."""
    name = host_of(private_url).rpartition(":")[0]
    code = (
        "from django.contrib.auth import get_user_model\n"
        "from django.core import signing\n"
        "u = get_user_model().objects.get(username='alice')\n"
        f"print(signing.dumps({{'h': {name!r}, 'n': '/\\\\evil.example', 'u': u.pk}},"
        " salt='sandboxes.preview.ticket'))\n"
    )
    ticket = server.manage("shell", "-c", code).strip().splitlines()[-1]
    with httpx.Client(base_url=server.url, follow_redirects=False) as browser:
        landed = browser.get(
            "/__sandbox_preview_auth",
            params={"ticket": ticket},
            headers={"Host": host_of(private_url)},
        )
    assert landed.status_code == 302
    assert landed.headers["location"] == "/"


def test_path_fallback_unsafe_methods_need_csrf(
    server: LiveServer, api: httpx.Client, cookie_app: dict, alice_session: str
) -> None:
    expose(api, cookie_app, COOKIE_PORT)
    url = server.url + f"/preview/{cookie_app['id']}/{COOKIE_PORT}/submit"
    csrf = "a" * 32
    cookies = f"sessionid={alice_session}; csrftoken={csrf}"
    with httpx.Client(timeout=60) as browser:
        # a form on another page of the same site (another port on 127.0.0.1)
        forged = browser.post(
            url,
            content=b"x=1",
            headers={
                "Cookie": cookies,
                "Origin": "http://127.0.0.1:1",
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        assert forged.status_code == 403 and "POST" not in forged.text
        # the right token but the wrong Origin
        wrong_origin = browser.put(
            url,
            content=b"x",
            headers={"Cookie": cookies, "X-CSRFToken": csrf, "Origin": "http://127.0.0.1:1"},
        )
        assert wrong_origin.status_code == 403
        no_token = browser.delete(url, headers={"Cookie": cookies, "Origin": server.url})
        assert no_token.status_code == 403
        # the IDE's own page, with the CSRF header: passes
        own = browser.post(
            url,
            content=b"abc",
            headers={"Cookie": cookies, "X-CSRFToken": csrf, "Origin": server.url},
        )
        assert own.status_code == 200 and own.text == "POST 3"
        # reads need no token
        assert browser.get(url, headers={"Cookie": cookies}).text == "GET 0"
    # a program with its bearer token needs none either
    assert api.post(url, content=b"ab").text == "POST 2"
