"""Viewers see a student's previews: a course's teacher lists the student's
ports and opens their public and private previews, never exposes or unexposes; a
classmate sees them only while a view is shared; nobody else sees them at all; and
when the teacher's access ends, so do the listing and the private preview.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx
import pytest

from tests.integration.test_classroom import STARTER, Class, join, new_class, sh
from tests.server import LiveServer, running_server

PUBLIC, PRIVATE, UNSHARED = 18123, 18124, 18125
PASSWORD = "pw-Viewer-Previews-7"


@pytest.fixture(scope="module")
def school(sandbox_image: str) -> Iterator[LiveServer]:
    with running_server("sbxview", {"CLASSROOM_WARM_POOL": "0"}) as server:
        yield server


@pytest.fixture(scope="module")
def klass(school: LiveServer) -> Class:
    return new_class(school, "teacher-v", "web101")


@pytest.fixture(scope="module")
def student(school: LiveServer, klass: Class) -> dict:
    """stu-v joined, runs three web servers and exposes two (one private)."""
    joined = join(school, "stu-v", klass.invite["token"])
    assert joined.status_code == 201, joined.text
    sid = joined.json()["sandbox"]
    api = school.client("stu-v")
    for port in (PUBLIC, PRIVATE, UNSHARED):
        sh(
            api,
            sid,
            f"setsid -f python3 -m http.server {port} --directory /workspace >/dev/null 2>&1",
        )
    deadline = time.monotonic() + 30
    while {PUBLIC, PRIVATE, UNSHARED} - set(api.get(f"/sandboxes/{sid}/ports").json()["listening"]):
        assert time.monotonic() < deadline, "the servers did not start"
        time.sleep(0.3)
    urls = {}
    for port, private in ((PUBLIC, False), (PRIVATE, True)):
        made = api.post(f"/sandboxes/{sid}/ports", json={"port": port, "private": private})
        assert made.status_code == 201, made.text
        urls[port] = made.json()["url"]
    return {"id": sid, "api": api, "urls": urls}


def set_password(server: LiveServer, username: str) -> None:
    server.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User; "
        f"u, _ = User.objects.get_or_create(username={username!r}); "
        f"u.set_password({PASSWORD!r}); u.save()",
    )


@contextmanager
def browser_of(server: LiveServer, username: str) -> Iterator[httpx.Client]:
    """A browser-like client (cookies, no redirects followed) logged in as the user."""
    set_password(server, username)
    with httpx.Client(follow_redirects=False, timeout=60) as browser:
        yield login(server, browser, username)


def login(server: LiveServer, browser: httpx.Client, username: str) -> httpx.Client:
    browser.get(server.url + "/accounts/login/")
    login = browser.post(
        server.url + "/accounts/login/",
        data={
            "username": username,
            "password": PASSWORD,
            "csrfmiddlewaretoken": browser.cookies["csrftoken"],
        },
        headers={"Referer": server.url + "/accounts/login/"},
    )
    assert login.status_code == 302, login.text
    assert "sessionid" in browser.cookies
    return browser


def on_preview(server: LiveServer, url: str, path: str = "/hello.py") -> tuple[str, dict]:
    """The live server's address for ``path`` and the preview URL's Host header."""
    return server.url + path, {"Host": urlsplit(url).netloc}


def ide_side(server: LiveServer, location: str) -> str:
    """An IDE-origin URL (``http://localhost:port/…``) as this test reaches it."""
    return location.replace(f"http://localhost:{server.port}", server.url, 1)


def private_login(server: LiveServer, browser: httpx.Client, url: str) -> httpx.Response:
    """Open a private preview as a browser would: the preview host sends it to
    /preview-auth/ on the IDE origin; that answer is returned."""
    target, headers = on_preview(server, url)
    first = browser.get(target, headers=headers)
    assert first.status_code == 302, first.text
    assert first.headers["location"].startswith(f"http://localhost:{server.port}/preview-auth/")
    return browser.get(ide_side(server, first.headers["location"]))


def land(server: LiveServer, browser: httpx.Client, url: str, ticket_url: str) -> str:
    """Follow the ticket back to the preview host; returns the preview cookie."""
    assert ticket_url.startswith(f"{url}__sandbox_preview_auth?ticket=")
    parts = urlsplit(ticket_url)
    landed = browser.get(
        server.url + parts.path + "?" + parts.query, headers={"Host": urlsplit(url).netloc}
    )
    assert landed.status_code == 302 and landed.headers["location"] == "/hello.py"
    # The jar files it under the server's address, not the preview host: keep it out
    # of the jar and send it explicitly to the preview host only.
    browser.cookies.delete("sandbox_preview")
    return landed.headers["set-cookie"].split(";")[0]


def test_teacher_lists_and_opens_a_students_previews(
    school: LiveServer, klass: Class, student: dict
) -> None:
    sid = student["id"]
    listed = klass.teacher.get(f"/sandboxes/{sid}/ports")
    assert listed.status_code == 200, listed.text
    body = listed.json()
    exposed = {p["port"]: p for p in body["exposed"]}
    assert set(exposed) == {PUBLIC, PRIVATE}
    assert exposed[PUBLIC]["url"] == student["urls"][PUBLIC]
    assert exposed[PRIVATE]["private"] is True and exposed[PUBLIC]["private"] is False
    # The listening ports, the unshared one included (the IDE names it as such).
    assert {PUBLIC, PRIVATE, UNSHARED} <= set(body["listening"])

    # The public preview: anyone with the link.
    target, headers = on_preview(school, student["urls"][PUBLIC])
    page = httpx.get(target, headers=headers, timeout=60)
    assert page.status_code == 200 and page.content == STARTER["hello.py"]

    # The private one: through the preview-auth flow with the teacher's session.
    url = student["urls"][PRIVATE]
    with browser_of(school, "teacher-v") as browser:
        back = private_login(school, browser, url)
        assert back.status_code == 302, back.text
        cookie = land(school, browser, url, back.headers["location"])
        target, headers = on_preview(school, url)
        seen = browser.get(target, headers={**headers, "Cookie": cookie})
        assert seen.status_code == 200 and seen.content == STARTER["hello.py"]


def test_the_teacher_cannot_expose_or_unexpose(
    school: LiveServer, klass: Class, student: dict
) -> None:
    sid = student["id"]
    for response in (
        klass.teacher.post(f"/sandboxes/{sid}/ports", json={"port": UNSHARED}),
        klass.teacher.post(f"/sandboxes/{sid}/ports", json={"port": PUBLIC, "private": True}),
        klass.teacher.delete(f"/sandboxes/{sid}/ports/{PUBLIC}"),
        klass.teacher.delete(f"/sandboxes/{sid}/ports/{PRIVATE}"),
    ):
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "read_only"
    # Nothing changed: the same two ports, the same URLs.
    exposed = student["api"].get(f"/sandboxes/{sid}/ports").json()["exposed"]
    assert {p["port"]: p["url"] for p in exposed} == student["urls"]


def test_others_see_nothing(school: LiveServer, klass: Class, student: dict) -> None:
    sid = student["id"]
    other_class = new_class(school, "teacher-other", "web102")
    strangers = {
        "stranger-v": school.client("stranger-v"),
        "teacher-other": other_class.teacher,
    }
    # A classmate, too, until the student shares a view with the class.
    assert join(school, "mate-v", klass.invite["token"]).status_code == 201
    strangers["mate-v"] = school.client("mate-v")
    for name, api in strangers.items():
        for response in (
            api.get(f"/sandboxes/{sid}/ports"),
            api.post(f"/sandboxes/{sid}/ports", json={"port": UNSHARED}),
            api.delete(f"/sandboxes/{sid}/ports/{PUBLIC}"),
        ):
            assert response.status_code == 404, (name, response.text)
        with browser_of(school, name) as browser:
            refused = private_login(school, browser, student["urls"][PRIVATE])
            assert refused.status_code == 404, (name, refused.text)
            assert "ticket" not in refused.headers.get("location", "")

    # A shared view: the classmate sees the previews; revoked: not any more.
    course = klass.course["id"]
    share = student["api"].post(f"/courses/{course}/shares", json={"sandbox": sid, "kind": "view"})
    assert share.status_code == 201, share.text
    mate = strangers["mate-v"]
    listed = mate.get(f"/sandboxes/{sid}/ports")
    assert listed.status_code == 200, listed.text
    assert {p["port"] for p in listed.json()["exposed"]} == {PUBLIC, PRIVATE}
    assert mate.post(f"/sandboxes/{sid}/ports", json={"port": UNSHARED}).status_code == 403
    with browser_of(school, "mate-v") as browser:
        url = student["urls"][PRIVATE]
        back = private_login(school, browser, url)
        assert back.status_code == 302, back.text
        cookie = land(school, browser, url, back.headers["location"])
        revoked = student["api"].delete(f"/courses/{course}/shares/{share.json()['id']}")
        assert revoked.status_code == 204
        assert mate.get(f"/sandboxes/{sid}/ports").status_code == 404
        assert private_login(school, browser, url).status_code == 404
        assert_cookie_stops_working(school, browser, url, cookie)


def assert_cookie_stops_working(
    server: LiveServer, browser: httpx.Client, url: str, cookie: str
) -> None:
    """A preview cookie issued before the access ended is refused within seconds:
    the browser is sent to log in again (where it is refused)."""
    target, headers = on_preview(server, url)
    started = time.monotonic()
    while True:
        response = browser.get(target, headers={**headers, "Cookie": cookie})
        if response.status_code == 302:
            assert "/preview-auth/" in response.headers["location"]
            break
        assert response.status_code == 200, response.text
        assert time.monotonic() - started < 15, "the old cookie still works"
        time.sleep(0.5)


def test_when_the_course_goes_so_do_the_previews(
    school: LiveServer, klass: Class, student: dict
) -> None:
    # (The module's last test: the course is deleted.)
    sid, url = student["id"], student["urls"][PRIVATE]
    with browser_of(school, "teacher-v") as browser:
        back = private_login(school, browser, url)
        assert back.status_code == 302, back.text
        cookie = land(school, browser, url, back.headers["location"])
        target, headers = on_preview(school, url)
        assert browser.get(target, headers={**headers, "Cookie": cookie}).status_code == 200

        deleted = klass.teacher.delete(f"/courses/{klass.course['id']}")
        assert deleted.status_code == 204, deleted.text
        listed = klass.teacher.get(f"/sandboxes/{sid}/ports")
        assert listed.status_code == 404 and listed.json()["error"]["code"] == "not_found"
        refused = private_login(school, browser, url)
        assert refused.status_code == 404 and "ticket" not in refused.headers.get("location", "")
        assert_cookie_stops_working(school, browser, url, cookie)
    # The student's own previews are untouched; the public one still opens for anyone.
    exposed = student["api"].get(f"/sandboxes/{sid}/ports").json()["exposed"]
    assert {p["port"] for p in exposed} == {PUBLIC, PRIVATE}
    target, headers = on_preview(school, student["urls"][PUBLIC])
    assert httpx.get(target, headers=headers, timeout=60).status_code == 200
