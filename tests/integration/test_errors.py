"""Bad input gets the API's error shape with a fitting status: never HTML, never 500."""

from __future__ import annotations

import httpx
import pytest

from tests.server import LiveServer


def error_of(response: httpx.Response) -> dict[str, str]:
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"]
    return body["error"]


def test_no_credentials_is_401(server: LiveServer) -> None:
    for path in ("/sandboxes", "/sandboxes/abcdefabcdef"):
        response = httpx.get(server.url + "/api/v1" + path)
        assert response.status_code == 401
        assert error_of(response)["code"] == "unauthorized"
    bad = httpx.get(server.url + "/api/v1/sandboxes", headers={"Authorization": "Bearer sbx_wrong"})
    assert bad.status_code == 401 and error_of(bad)["code"] == "invalid_token"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b'{"name": 5}', "invalid_request"),
        (b'{"name": "Has Spaces"}', "invalid_request"),
        (b'{"name": "-leading-dash"}', "invalid_request"),
        (b'{"name": "' + b"a" * 40 + b'"}', "invalid_request"),
        (b'{"sleep_after": -1}', "invalid_request"),
        (b'{"sleep_after": "10"}', "invalid_request"),
        (b'{"keep_alive": "yes"}', "invalid_request"),
        (b'{"env": {"A": 1}}', "invalid_request"),
        (b'{"nmae": "typo"}', "invalid_request"),
        (b"[1, 2]", "invalid_request"),
    ],
)
def test_bad_sandbox_input(api: httpx.Client, body: bytes, code: str) -> None:
    response = api.post("/sandboxes", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert error_of(response)["code"] == code


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"command": ""},
        {"command": "   "},
        {"command": []},
        {"command": 5},
        {"command": ["ls", 5]},
        {"command": "ls", "timeout": -1},
        {"command": "ls", "timeout": 0},
        {"command": "ls", "timeout": "1"},
        {"command": "ls", "env": {"A=B": "x"}},
        {"command": "ls", "cwd": 7},
        {"command": "ls", "stdin": ["x"]},
    ],
)
def test_bad_exec_input(api: httpx.Client, shared_sandbox: dict, body: dict) -> None:
    response = api.post(f"/sandboxes/{shared_sandbox['id']}/exec", json=body)
    assert response.status_code == 400, response.text
    assert error_of(response)["code"] in ("invalid_request", "bad_request")


def test_unknown_ids_urls_and_methods(api: httpx.Client, shared_sandbox: dict) -> None:
    assert error_of(api.get("/sandboxes/nosuchsandbox"))["code"] == "not_found"
    assert api.post("/sandboxes/zzzzzzzzzzzz/exec", json={"command": "ls"}).status_code == 404
    assert error_of(api.get("/no/such/endpoint"))["code"] == "not_found"
    wrong = api.put("/sandboxes")
    assert wrong.status_code == 405 and error_of(wrong)["code"] == "method_not_allowed"


def test_missing_cwd_is_404(api: httpx.Client, shared_sandbox: dict) -> None:
    response = api.post(
        f"/sandboxes/{shared_sandbox['id']}/exec", json={"command": "ls", "cwd": "/nope/dir"}
    )
    assert response.status_code == 404
    assert "/nope/dir" in error_of(response)["message"]


def test_oversized_json_is_413(api: httpx.Client, shared_sandbox: dict) -> None:
    big = b'{"command": "echo", "stdin": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    response = api.post(
        f"/sandboxes/{shared_sandbox['id']}/exec",
        content=big,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"


def test_session_caller_needs_csrf(server: LiveServer) -> None:
    server.manage("shell", "-c", _make_user_with_password("carol", "pw-carol-123"))
    with httpx.Client(base_url=server.url, follow_redirects=False) as browser:
        login_page = browser.get("/admin/login/")
        csrf = browser.cookies["csrftoken"]
        browser.post(
            "/admin/login/",
            data={"username": "carol", "password": "pw-carol-123", "csrfmiddlewaretoken": csrf},
            headers={"Referer": server.url + "/admin/login/"},
        )
        assert login_page.status_code == 200
        assert browser.get("/api/v1/sandboxes").status_code == 200
        forged = browser.post("/api/v1/sandboxes", json={"name": "forged"})
        assert forged.status_code == 403 and error_of(forged)["code"] == "csrf_failed"


def _make_user_with_password(username: str, password: str) -> str:
    return (
        "from django.contrib.auth.models import User; "
        f"u, _ = User.objects.get_or_create(username={username!r}, defaults={{'is_staff': True}}); "
        f"u.is_staff = True; u.set_password({password!r}); u.save()"
    )
