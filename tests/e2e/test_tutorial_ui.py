"""A guided tutorial in the browser: a student opens their course's sandbox, reads
the intro, runs a snippet into the terminal with its Run button, fails a check and
sees why, passes it, and goes on to the finish; the teacher's roster shows the step
and last check, and the course page previews the tutorial.
Screenshots: test-artifacts/tutorial-*.png."""

from __future__ import annotations

import re

from playwright.sync_api import Browser, Page, expect

from tests.integration.test_tutorials import sample_files, upload

from .conftest import shot
from .test_progress_ui import logged_in, user_with_password


def check_until_done(page: Page, next_title: str) -> None:
    """Press Check until the step passes (what Run typed may still be running)."""
    for _ in range(20):
        with page.expect_response(lambda r: r.url.endswith("/tutorial/check")) as answer:
            page.locator("#tutorial-check").click()
        if answer.value.json()["passed"]:
            expect(page.locator("#tutorial-step-title")).to_have_text(next_title)
            return
        expect(page.locator("#tutorial-check")).to_be_enabled()
        page.wait_for_timeout(500)
    raise AssertionError(f"the step before {next_title!r} never passed")


def test_a_student_follows_the_tutorial_and_the_teacher_sees_it(browser: Browser, server) -> None:  # type: ignore[no-untyped-def]
    teacher = user_with_password(server, "tut-teach")
    student = user_with_password(server, "tut-stud")
    api = server.client(teacher)
    template = api.post("/templates", json={"name": "shell-basics"}).json()
    upload(api, template["id"], sample_files())
    course = api.post("/courses", json={"name": "Shell", "template": template["id"]}).json()
    invite = api.post(f"/courses/{course['id']}/invites", json={}).json()
    joined = server.client(student).post(f"/invites/{invite['token']}/join")
    assert joined.status_code == 201, joined.text
    sandbox = joined.json()["sandbox"]

    # The teacher previews the tutorial before anyone starts it.
    t_context, t_page, t_log = logged_in(browser, server, teacher)
    t_page.goto(f"/courses/{course['id']}/")
    card = t_page.locator("#tutorial-card")
    expect(card).to_contain_text("Tutorial: Shell basics")
    expect(card.get_by_test_id("tutorial-problem").first).to_contain_text("step1/verify.sh:1")
    card.get_by_test_id("tutorial-preview-button").click()
    expect(card.locator(".tutorial-page")).to_have_count(5)
    expect(card.locator(".tutorial-page").nth(1)).to_contain_text("Step 1: Write a greeting")
    row = t_page.locator(f'tr[data-student="{student}"]')
    expect(row.get_by_test_id("tutorial-step")).to_have_text("not started")

    context, page, log = logged_in(browser, server, student)
    page.goto(f"/sandboxes/{sandbox}/")
    panel = page.locator("#tutorial")
    expect(panel).to_be_visible(timeout=60_000)
    expect(panel).to_contain_text("Welcome")
    expect(page.locator("#tutorial-where")).to_have_text("Introduction")
    expect(page.locator(".term-host .xterm-rows").first).to_contain_text("$", timeout=60_000)
    page.locator("#tutorial-start").click()
    expect(page.locator("#tutorial-step-title")).to_have_text("Write a greeting")
    expect(page.locator("#tutorial-where")).to_have_text("Step 1 of 3")
    image = panel.locator("img")
    expect(image).to_be_visible()
    assert image.evaluate("img => img.complete && img.naturalWidth") == 8

    # Check before doing anything: it says why not.
    page.locator("#tutorial-check").click()
    expect(page.locator("#tutorial-result")).to_contain_text("Not yet")
    expect(page.locator("#tutorial-output")).to_contain_text("greeting.txt is missing")
    shot(page, "tutorial-failed-check")

    # Run types the snippet into the terminal; then the check passes.
    action = panel.locator('[data-action="0"]')
    expect(action.locator(".tutorial-copy")).to_be_visible()
    action.locator(".tutorial-run").click()
    rows = page.locator(".term-host:not([hidden]) .xterm-rows")
    expect(rows).to_contain_text("echo hello > greeting.txt")
    check_until_done(page, "Say it louder")
    expect(page.locator('.tutorial-steps li[data-step="1"]')).to_have_class(re.compile("done"))

    # A fenced block runs too; an "interrupt" one stops what runs first.
    panel.locator('pre[data-action="1"] .tutorial-run').click()
    panel.locator('[data-action="2"] .tutorial-run').click()  # sleep 1000
    expect(rows).to_contain_text("sleep 1000")
    panel.locator('[data-action="3"] .tutorial-run').click()  # Ctrl-C, then cat loud.txt
    expect(rows).to_contain_text("HELLO", timeout=30_000)
    check_until_done(page, "Use the helper")

    # The step's foreground script runs in a terminal of its own.
    expect(page.locator('.term-host[data-terminal="tutorial"] .xterm-rows')).to_contain_text(
        "the helper is in ~/bin", timeout=30_000
    )
    page.locator('.term-tab[data-terminal="t1"]').click()
    panel.locator('[data-action="5"] .tutorial-run').click()
    check_until_done(page, "Finished")
    expect(page.locator("#tutorial-where")).to_have_text("Finished")
    shot(page, "tutorial-finished")

    # A reload comes back to where the learner is.
    page.reload()
    expect(page.locator("#tutorial-step-title")).to_have_text("Finished", timeout=60_000)
    expect(panel).to_contain_text("Well done")

    # What the panel renders is sanitised: no script, handlers or javascript: links.
    html = page.evaluate(
        """async () => (await import("/static/ide/vendor/markdown.js")).renderMarkdown(
          '<img src=x onerror=alert(1)><script>alert(2)</script>' +
          '\\n\\n[a](javascript:alert(3)) <a href="javascript:alert(4)">b</a>' +
          '<iframe src="/"></iframe> <b style="x">ok</b>')"""
    )
    for bad in ("onerror", "<script", 'href="javascript:', "<iframe", "style="):
        assert bad not in html, html
    assert "<b>ok</b>" in html

    # The teacher's roster shows it (it refreshes by itself).
    row = t_page.locator(f'tr[data-student="{student}"]')
    expect(row.get_by_test_id("tutorial-step")).to_have_text("finished", timeout=15_000)
    expect(row.get_by_test_id("tutorial-last-check")).to_contain_text("step 3 passed")
    shot(t_page, "tutorial-roster")
    # Viewing the student's workspace, the teacher reads the tutorial without Run or Check.
    row.get_by_test_id("view-student").click()
    expect(t_page.locator("#tutorial")).to_be_visible(timeout=60_000)
    expect(t_page.locator("#tutorial-step-title")).to_have_text("Finished")
    t_page.locator('.tutorial-steps li[data-step="2"]').click()
    expect(t_page.locator("#tutorial-step-title")).to_have_text("Say it louder")
    expect(t_page.locator("#tutorial .tutorial-copy").first).to_be_visible()
    expect(t_page.locator("#tutorial .tutorial-run")).to_have_count(0)
    expect(t_page.locator("#tutorial-check")).to_have_count(0)
    for errors in (log.errors, t_log.errors):
        assert not errors, errors
    context.close()
    t_context.close()
