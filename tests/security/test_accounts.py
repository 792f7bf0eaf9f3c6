"""Accounts: who may sign up, how often a password may be guessed, and cookies that
never travel over plain HTTP when the site is served over HTTPS.

Attacks through the browser pages of live servers, each with the settings under
test (SIGNUP=closed, SIGNUP=invite, HTTPS behind a TLS-terminating proxy); password
guessing on the shared test server.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.server import LiveServer, running_server

PASSWORD = "Correct-Horse-42"  # noqa: S105 - a test account's password


NO_POOL = {"CLASSROOM_WARM_POOL": "0"}


@pytest.fixture(scope="module")
def closed(sandbox_image: str) -> Iterator[LiveServer]:
    with running_server("sbxacct", {**NO_POOL, "SIGNUP": "closed"}) as server:
        yield server


@pytest.fixture(scope="module")
def invite_only(sandbox_image: str) -> Iterator[LiveServer]:
    with running_server("sbxacct", {**NO_POOL, "SIGNUP": "invite"}) as server:
        yield server


@pytest.fixture(scope="module")
def behind_tls_proxy(sandbox_image: str) -> Iterator[LiveServer]:
    settings = {**NO_POOL, "HTTPS": "1", "TRUST_X_FORWARDED_PROTO": "1"}
    with running_server("sbxacct", settings) as server:
        yield server


def make_user(server: LiveServer, username: str) -> None:
    server.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User; "
        f"u, _ = User.objects.get_or_create(username={username!r}); "
        f"u.set_password({PASSWORD!r}); u.save()",
    )


def user_exists(server: LiveServer, username: str) -> bool:
    out = server.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User; "
        f"print(User.objects.filter(username={username!r}).exists())",
    )
    return out.strip().endswith("True")


def sign_up(browser: httpx.Client, username: str, next_url: str = "") -> httpx.Response:
    """Post the sign-up form as a browser would (the CSRF cookie from the login page,
    which every mode has, so a refusal is the view's and not the CSRF check's)."""
    browser.get("/accounts/login/")
    data = {
        "username": username,
        "password1": PASSWORD,
        "password2": PASSWORD,
        "csrfmiddlewaretoken": browser.cookies["csrftoken"],
    }
    if next_url:
        data["next"] = next_url
    return browser.post("/accounts/signup/", data=data)


def log_in(browser: httpx.Client, username: str, password: str, **headers: str) -> httpx.Response:
    browser.get("/accounts/login/", headers=headers)
    data = {
        "username": username,
        "password": password,
        "csrfmiddlewaretoken": browser.cookies.get("csrftoken") or "",
    }
    return browser.post("/accounts/login/", data=data, headers=headers)


# --------------------------------------------------------------------- SIGNUP=closed


def test_closed_signup_makes_no_accounts(closed: LiveServer) -> None:
    with httpx.Client(base_url=closed.url, timeout=60) as browser:
        page = browser.get("/accounts/signup/")
        assert page.status_code == 404
        assert "Sign-up is closed on this server" in page.text
        # The form cannot be posted around the page either.
        posted = sign_up(browser, "intruder")
        assert posted.status_code == 404
        assert "Sign-up is closed on this server" in posted.text
        assert "sessionid" not in browser.cookies
        login_page = browser.get("/accounts/login/")
        assert "/accounts/signup/" not in login_page.text
    assert not user_exists(closed, "intruder")
    # Administrators still make accounts: the management command, then the API.
    with closed.client("made-by-admin") as api:
        assert api.get("/sandboxes").status_code == 200


# --------------------------------------------------------------------- SIGNUP=invite


def test_invite_only_signup_needs_a_live_invite_link(invite_only: LiveServer) -> None:
    with httpx.Client(base_url=invite_only.url, timeout=60) as browser:
        page = browser.get("/accounts/signup/")
        assert page.status_code == 403
        assert "by invitation" in page.text
        for name, next_url in [
            ("walk-in", ""),
            ("forger", "/join/AAAAAAAAAAAAAAAA/"),  # no such invite
            ("detour", "/courses/"),  # not an invite link
        ]:
            refused = sign_up(browser, name, next_url)
            assert refused.status_code == 403
            assert "by invitation" in refused.text
    for name in ("walk-in", "forger", "detour"):
        assert not user_exists(invite_only, name)


def test_invite_link_leads_to_signup(invite_only: LiveServer) -> None:
    with invite_only.client("teacher") as teacher:
        template = teacher.post("/templates", json={"name": "week-1"})
        assert template.status_code == 201, template.text
        course = teacher.post("/courses", json={"name": "Intro", "template": template.json()["id"]})
        assert course.status_code == 201, course.text
        invite = teacher.post(f"/courses/{course.json()['id']}/invites", json={})
        assert invite.status_code == 201, invite.text
    join_path = f"/join/{invite.json()['token']}/"
    with httpx.Client(base_url=invite_only.url, timeout=60) as browser:
        join_page = browser.get(join_path)
        assert 'data-testid="signup-to-join"' in join_page.text
        joined = sign_up(browser, "student", next_url=join_path)
        assert joined.status_code == 302
        assert joined.headers["location"] == join_path
        assert 'data-testid="join"' in browser.get(join_path).text  # logged in now
    assert user_exists(invite_only, "student")


# --------------------------------------------------------------------- login throttling


def test_password_guessing_is_locked_out_per_user_and_address(server: LiveServer) -> None:
    make_user(server, "victim")
    make_user(server, "bystander")
    with httpx.Client(base_url=server.url, timeout=60) as attacker:
        first = log_in(attacker, "victim", "guess-0")
        assert first.status_code == 200  # a wrong password is just a wrong password
        for attempt in range(1, 5):
            log_in(attacker, "victim", f"guess-{attempt}")
        # Five failures: even the right password is refused for now, readably.
        locked = log_in(attacker, "victim", PASSWORD)
        assert locked.status_code == 429
        assert "Too many failed logins" in locked.text
        assert "sessionid" not in attacker.cookies
    # Another account from the same address is not locked out (a classroom shares one).
    with httpx.Client(base_url=server.url, timeout=60) as neighbour:
        assert log_in(neighbour, "bystander", PASSWORD).status_code == 302
    # Programs using the locked account's API token are not logins: unaffected.
    with server.client("victim") as api:
        assert api.get("/sandboxes").status_code == 200


# --------------------------------------------------------------------- HTTPS behind a proxy


def set_cookie_headers(response: httpx.Response, name: str) -> list[str]:
    return [v for v in response.headers.get_list("set-cookie") if v.startswith(name + "=")]


def test_cookies_are_secure_and_hsts_is_sent_over_https(behind_tls_proxy: LiveServer) -> None:
    origin = f"https://127.0.0.1:{behind_tls_proxy.port}"
    make_user(behind_tls_proxy, "tls-user")
    over_https = {"X-Forwarded-Proto": "https", "Referer": origin + "/accounts/login/"}
    with httpx.Client(base_url=behind_tls_proxy.url, timeout=60) as browser:
        page = browser.get("/accounts/login/", headers=over_https)
        assert page.headers["strict-transport-security"].startswith("max-age=31536000")
        csrf = set_cookie_headers(page, "csrftoken")
        assert csrf and all("secure" in v.lower() for v in csrf)
        # httpx keeps Secure cookies for https only: hand the token over by hand.
        token = browser.cookies["csrftoken"]
        logged_in = browser.post(
            "/accounts/login/",
            data={"username": "tls-user", "password": PASSWORD, "csrfmiddlewaretoken": token},
            headers={**over_https, "Cookie": f"csrftoken={token}"},
        )
        assert logged_in.status_code == 302, logged_in.text
        session = set_cookie_headers(logged_in, "sessionid")
        assert session and all("secure" in v.lower() for v in session)
        # The same server over plain HTTP (no proxy saying otherwise) sends no HSTS.
        assert "strict-transport-security" not in browser.get("/accounts/login/").headers
