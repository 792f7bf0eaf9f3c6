"""Templates in the browser: the dashboard offers the user's templates,
creating from one gives a sandbox with the starter files, and the IDE opens the
template's files and points the preview pane at its port once a server listens.
Screenshot: test-artifacts/template-ide.png."""

from __future__ import annotations

import re
import secrets

from playwright.sync_api import Browser, expect

from .conftest import ConsoleLog, new_context, shot

PASSWORD = "e2e-Template-Horse-42"
APP = "print('hello from the starter')\n"
SERVE = "import http.server\nhttp.server.test(http.server.SimpleHTTPRequestHandler, port=8000)\n"


def test_create_from_template_and_open_its_files(browser: Browser, server) -> None:  # type: ignore[no-untyped-def]
    user = "tpl" + secrets.token_hex(3)
    with server.client(user) as api:
        server.manage(
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model; "
            f"u = get_user_model().objects.get(username={user!r}); "
            f"u.set_password({PASSWORD!r}); u.save()",
        )
        template = api.post(
            "/templates",
            json={
                "name": "lesson-web",
                "description": "A small web page",
                "open_files": ["app.py", "serve.py"],
                "preview_port": 8000,
                "setup_command": "echo '<h1>Lesson page</h1>' > index.html",
            },
        )
        assert template.status_code == 201, template.text
        tid = template.json()["id"]
        files = [("app.py", ("app.py", APP.encode())), ("serve.py", ("s", SERVE.encode()))]
        assert api.put(f"/templates/{tid}/files", files=files).status_code == 200

    context = new_context(browser, server.url)
    page = context.new_page()
    log = ConsoleLog(page)
    try:
        page.goto("/accounts/login/")
        page.fill("input[name=username]", user)
        page.fill("input[name=password]", PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page).not_to_have_url(re.compile(r"/accounts/login/"))

        select = page.locator("#create-template")
        expect(select.locator("option[data-template='lesson-web']")).to_have_count(1)
        select.select_option(tid)
        page.fill("#create-name", "web-lesson")
        page.get_by_role("button", name="Create sandbox").click()
        card = page.locator('[data-sandbox="web-lesson"]')
        expect(card).to_be_visible(timeout=90_000)
        expect(card).to_contain_text("lesson-web")

        card.get_by_test_id("open").click()
        expect(page).to_have_url(re.compile(r"/sandboxes/\w+/"))
        tabs = page.locator("#editor-tabs .tab .name")
        expect(tabs).to_have_text(["app.py", "serve.py"])
        expect(page.locator("#editor-tabs .tab.active .name")).to_have_text("app.py")
        expect(page.locator(".cm-content").first).to_contain_text("hello from the starter")
        expect(page.locator("#ide")).to_have_attribute("data-preview-port", "8000")

        # Something listens on the template's port: the preview pane shows it.
        sid = page.locator("#ide").get_attribute("data-sandbox-id")
        with server.client(user) as api:
            started = api.post(
                f"/sandboxes/{sid}/processes",
                json={"command": "python3 serve.py", "cwd": "/workspace"},
            )
            assert started.status_code in (200, 201), started.text
        frame = page.frame_locator("#preview-frame")
        expect(frame.locator("h1")).to_have_text("Lesson page", timeout=30_000)
        shot(page, "template-ide")

        # Opened once: reloading keeps whatever the user has open, not the template's.
        page.locator("#editor-tabs .tab", has_text="serve.py").locator(".close").click()
        page.reload()
        expect(page.locator("#editor-tabs .tab .name")).to_have_text(["app.py"])

        # The teacher changes the starter; the dashboard pulls it in, keeping edits.
        with server.client(user) as api:
            api.put(f"/sandboxes/{sid}/files/content", params={"path": "app.py"}, content=b"mine\n")
            files = [("app.py", ("a", b"print('v2')\n")), ("notes.md", ("n", b"# Notes\n"))]
            assert api.put(f"/templates/{tid}/files", files=files).status_code == 200
        page.goto("/")
        page.locator('[data-sandbox="web-lesson"]').get_by_test_id("update-starter").click()
        expect(page.locator("#dash-message")).to_contain_text(
            "your version kept for app.py (the starter's is in app.starter.py)"
        )
        shot(page, "template-dashboard-update")
        assert not log.errors, log.errors
    finally:
        context.close()
