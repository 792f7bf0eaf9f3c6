"""A template with a Dockerfile, made in the browser: a refused one says why at
once; the form shows the build's progress line and its live log; a failing step is
named with its last lines and the form keeps the Dockerfile to fix.
Screenshots: test-artifacts/template-build-*.png."""

from __future__ import annotations

import secrets
import subprocess

from playwright.sync_api import Browser, expect

from .conftest import ConsoleLog, new_context, shot

PASSWORD = "e2e-Build-Horse-42"


def test_the_template_form_shows_the_build(browser: Browser, server) -> None:  # type: ignore[no-untyped-def]
    user = "bld" + secrets.token_hex(3)
    mark = secrets.token_hex(4)
    with server.client(user):
        server.manage(
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model; "
            f"u = get_user_model().objects.get(username={user!r}); "
            f"u.set_password({PASSWORD!r}); u.save()",
        )
    context = new_context(browser, server.url)
    page = context.new_page()
    log = ConsoleLog(page)
    images: list[str] = []
    try:
        page.goto("/accounts/login/")
        page.fill("input[name=username]", user)
        page.fill("input[name=password]", PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.goto("/courses/")

        # A Dockerfile on another image is refused at once, with the sentence.
        page.get_by_text("New template").click()
        page.fill("#template-form input[name=name]", "with-image")
        page.fill("#template-form textarea[name=dockerfile]", "FROM debian\nRUN true\n")
        page.get_by_role("button", name="Create template").click()
        expect(page.locator("#courses-message")).to_contain_text("must be `FROM sandbox`")
        expect(page.get_by_test_id("build")).to_have_count(0)

        # A step that fails: its progress line, the step and its last lines.
        page.fill(
            "#template-form textarea[name=dockerfile]",
            f"FROM sandbox\nRUN echo warming-{mark}\nRUN echo broken-{mark} >&2; exit 4\n",
        )
        page.get_by_role("button", name="Create template").click()
        view = page.get_by_test_id("build")
        expect(view).to_have_attribute("data-state", "failed", timeout=120_000)
        expect(page.get_by_test_id("build-count")).to_have_text("step 3 of 3")
        expect(page.get_by_test_id("build-log")).to_contain_text(f"warming-{mark}")
        expect(page.get_by_test_id("build-failed-step")).to_contain_text(
            "Step 3/3 : RUN echo broken"
        )
        expect(view).to_contain_text(f"broken-{mark}")
        expect(page.locator("#courses-message")).to_contain_text("did not build")
        shot(page, "template-build-failed")

        # Fixed in the same form: the build succeeds and the template is listed.
        page.fill(
            "#template-form textarea[name=dockerfile]",
            f"FROM sandbox\nRUN echo warming-{mark}\nRUN echo ready-{mark} > /opt/ready\n",
        )
        page.get_by_role("button", name="Create template").click()
        expect(view).to_have_attribute("data-state", "done", timeout=120_000)
        expect(page.get_by_test_id("build-log")).to_contain_text("Built sandbox-ide-template:")
        expect(view).to_contain_text("The image is built.")
        expect(page.locator('[data-template="with-image"]')).to_contain_text("own image")
        shot(page, "template-build-done")
        with server.client(user) as api:
            (template,) = api.get("/templates").json()["templates"]
            images.append(template["built_image"])
        assert not log.errors, log.errors
    finally:
        context.close()
        for tag in images:
            subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)
