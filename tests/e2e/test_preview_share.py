"""The preview pane's share control: a port opened in the IDE is private and still
shows in the pane; the pane names its level and who can open it in one sentence,
with a short link and its QR code; sharing publicly lets a stranger in through the
short link, and "Stop sharing" shuts them out at once with a page saying so."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from tests.e2e.conftest import ConsoleLog, new_context, shot

PORT = 8150
PASSWORD = "pw-Share-Pane-5"
USER = "share-e2e"


@pytest.fixture(scope="module")
def owner(browser: Browser, server) -> Iterator[tuple[BrowserContext, httpx.Client, str]]:  # type: ignore[no-untyped-def]
    """A logged-in owner with a sandbox serving a page on PORT (not exposed yet)."""
    api = server.client(USER)
    server.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User; "
        f"u = User.objects.get(username={USER!r}); u.set_password({PASSWORD!r}); u.save()",
    )
    made = api.post("/sandboxes", json={"name": "share-pane"})
    assert made.status_code == 201, made.text
    sid = made.json()["id"]
    api.put(
        f"/sandboxes/{sid}/files/content",
        params={"path": "/workspace/site/index.html"},
        content=b"<!doctype html><h1>Homework in progress</h1>",
    ).raise_for_status()
    ran = api.post(
        f"/sandboxes/{sid}/exec",
        json={
            "command": f"setsid -f python3 -m http.server {PORT} --directory /workspace/site "
            ">/dev/null 2>&1; sleep 0.5"
        },
    )
    assert ran.status_code == 200, ran.text
    context = new_context(browser, server.url)
    page = context.new_page()
    page.goto("/accounts/login/")
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).not_to_have_url(re.compile(r"/accounts/login/"))
    page.close()
    yield context, api, sid
    context.close()
    api.delete(f"/sandboxes/{sid}")
    api.close()


def test_share_control_shows_level_sentence_link_and_qr(
    owner: tuple[BrowserContext, httpx.Client, str], browser: Browser, server
) -> None:  # type: ignore[no-untyped-def]
    context, api, sid = owner
    page = context.new_page()
    log = ConsoleLog(page)
    page.goto(f"/sandboxes/{sid}/")
    chip = page.locator(f'#port-strip .port-chip[data-port="{PORT}"]')
    chip.click(timeout=60_000)

    # Private, and still shown in the pane for its owner.
    frame = page.frame_locator("#preview-frame")
    expect(frame.locator("h1")).to_have_text("Homework in progress", timeout=30_000)
    exposed = api.get(f"/sandboxes/{sid}/ports").json()["exposed"]
    entry = next(p for p in exposed if p["port"] == PORT)
    assert entry["visibility"] == "private"
    level = page.locator("#preview-share-level")
    expect(level).to_have_value("private")
    audience = page.locator("#preview-share-audience")
    expect(audience).to_have_text(entry["audience"])
    assert audience.inner_text().startswith("Only the owner")
    panel = page.locator("#preview-share")
    expect(panel).not_to_contain_text("null")  # no end of sharing: nothing said about it
    expect(page.locator("#preview-share-state")).to_have_count(0)
    link = page.locator("#preview-share-link")
    expect(link).to_have_text(re.compile(r"^localhost:\d+/p/[2-9a-z]{4}-[2-9a-z]{4}-[2-9a-z]{4}$"))
    assert link.get_attribute("href") == entry["share_url"]
    qr = page.locator("#preview-share-qr")
    expect(qr).to_be_visible()
    page.wait_for_function(
        "() => { const i = document.getElementById('preview-share-qr');"
        " return i.complete && i.naturalWidth > 0; }"
    )

    # A stranger following the short link is sent to sign in, and gets nothing.
    stranger = new_context(browser, server.url)
    visitor = stranger.new_page()
    visitor.goto(entry["share_url"])
    expect(visitor).to_have_url(re.compile(r"/accounts/login/"))

    # Shared with anyone who has the link, for a day.
    level.select_option("public")
    expect(audience).to_have_text(re.compile(r"^Anyone with the link can open it"))
    page.locator("#preview-share-expiry").select_option("86400")
    expect(page.locator("#preview-share-state")).to_contain_text("Shared until")
    shared = next(
        p for p in api.get(f"/sandboxes/{sid}/ports").json()["exposed"] if p["port"] == PORT
    )
    assert shared["visibility"] == "public" and shared["expires_at"]
    expect(frame.locator("h1")).to_have_text("Homework in progress")
    shot(page, "ide-preview-share-dark")
    visitor.goto(entry["share_url"])
    expect(visitor.locator("h1")).to_have_text("Homework in progress", timeout=30_000)

    # Stop sharing: the stranger's next visit says the link was revoked.
    page.locator("#preview-share-revoke").click()
    expect(level).to_have_value("private")
    expect(page.locator("#preview-share-state")).to_contain_text("Sharing was stopped")
    deadline = time.monotonic() + 10
    while api.get(f"/sandboxes/{sid}/ports").json()["exposed"][0]["visibility"] != "private":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    visitor.reload()
    expect(visitor.locator("h1")).to_have_text("This link was revoked")
    visitor.goto(entry["share_url"])
    expect(visitor.locator("h1")).to_have_text("This link was revoked")
    # The owner's pane still shows it.
    page.locator("#preview-reload").click()
    expect(frame.locator("h1")).to_have_text("Homework in progress", timeout=30_000)
    assert not log.errors, log.errors
    assert context.external_requests == [], context.external_requests  # type: ignore[attr-defined]
    stranger.close()
    page.close()
