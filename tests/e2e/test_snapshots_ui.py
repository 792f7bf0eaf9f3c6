"""The dashboard's Snapshot, Fork and Restore buttons: each says what happened, and
a refusal says why. Screenshot: test-artifacts/snapshots-dashboard.png."""

from __future__ import annotations

from playwright.sync_api import Browser, expect

from .conftest import shot
from .test_progress_ui import logged_in, user_with_password


def test_snapshot_fork_and_restore_from_the_dashboard(browser: Browser, server) -> None:  # type: ignore[no-untyped-def]
    user = user_with_password(server, "snapui")
    context, page, _ = logged_in(browser, server, user)
    with server.client(user) as api:
        box = api.post("/sandboxes", json={"name": "snappy"}).json()
        api.post(f"/sandboxes/{box['id']}/exec", json={"command": "echo v1 > /workspace/doc"})
        page.goto("/")
        card = page.locator('[data-sandbox="snappy"]')
        message = page.locator("#dash-message")

        card.get_by_test_id("restore").click()
        expect(message).to_contain_text("there is no snapshot to restore yet")

        card.get_by_test_id("snapshot").click()
        expect(message).to_contain_text("snappy: snapshot “snapshot-", timeout=60_000)
        expect(message).to_contain_text("MB, paused")

        card.get_by_test_id("fork").click()
        expect(message).to_contain_text("snappy: forked into “snappy-", timeout=60_000)
        expect(page.locator(".sandbox-card")).to_have_count(2)
        shot(page, "snapshots-dashboard")

        api.post(f"/sandboxes/{box['id']}/exec", json={"command": "echo v2 > /workspace/doc"})
        card.get_by_test_id("restore").click()
        page.locator("#confirm-ok").click()
        expect(message).to_contain_text("snappy: restored to snapshot", timeout=60_000)
        out = api.post(f"/sandboxes/{box['id']}/exec", json={"command": "cat /workspace/doc"})
        assert out.json()["stdout"] == "v1\n"
    context.close()
