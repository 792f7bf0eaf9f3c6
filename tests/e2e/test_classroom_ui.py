"""The classroom in the browser: a teacher starts a course and shares an invite link;
a student follows it, signs up, lands in the IDE with the starter open and types in
a terminal; the teacher sees them on the roster, watches their workspace read-only,
and resets it. Screenshots: test-artifacts/classroom-*.png."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from .conftest import ConsoleLog, new_context, shot

PASSWORD = "e2e-Correct-Horse-42"


def sign_up(page: Page, username: str) -> None:
    page.fill("input[name=username]", username)
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.get_by_role("button", name="Sign up").click()


@pytest.fixture(scope="module")
def teacher(browser: Browser, server) -> Iterator[tuple[BrowserContext, str]]:  # type: ignore[no-untyped-def]
    """A teacher with an account made in the browser."""
    context = new_context(browser, server.url)
    page = context.new_page()
    username = "teach" + secrets.token_hex(3)
    page.goto("/accounts/signup/")
    sign_up(page, username)
    expect(page.get_by_text(f"Welcome, {username}!")).to_be_visible()
    page.close()
    yield context, username
    assert context.external_requests == [], context.external_requests  # type: ignore[attr-defined]
    context.close()


def test_teacher_and_student_flows(browser: Browser, server, teacher, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    context, _ = teacher
    page = context.new_page()
    log = ConsoleLog(page)

    # The teacher makes a template from uploaded files, a course on it and an invite.
    page.goto("/courses/")
    expect(page.get_by_text("No templates yet.")).to_be_visible()
    page.get_by_text("New template").click()
    page.fill("#template-form input[name=name]", "lesson-1")
    page.set_input_files(
        "#template-form input[name=files]",
        files=[
            {
                "name": "hello.py",
                "mimeType": "text/plain",
                "buffer": b'print("hello from lesson 1")\n',
            },
            {"name": "README.md", "mimeType": "text/plain", "buffer": b"# Lesson 1\n"},
        ],
    )
    folder = tmp_path / "starter"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "notes.txt").write_text("from a folder\n")
    page.set_input_files("#template-form input[name=folder]", folder)
    page.fill("#template-form input[name=open_files]", "hello.py")
    page.get_by_role("button", name="Create template").click()
    expect(page.locator('[data-template="lesson-1"]')).to_contain_text("starter")
    shot(page, "classroom-courses")
    expect(page.locator("#course-template option")).to_have_text(["lesson-1"])
    page.fill("#course-form input[name=name]", "Python 101")
    page.get_by_role("button", name="Create course").click()
    expect(page.get_by_role("heading", name="Python 101")).to_be_visible()
    expect(page.get_by_text("No invite links yet.")).to_be_visible()  # the script is ready
    page.get_by_test_id("new-invite").click()
    invite = page.get_by_test_id("invite-url").first
    expect(invite).to_contain_text("/join/")
    invite_url = invite.inner_text().strip()
    expect(page.get_by_text("No students yet")).to_be_visible()
    course_url = page.url

    # A student follows the link: signs up, comes back, joins, lands in the IDE.
    student_context = new_context(browser, server.url)
    student = student_context.new_page()
    student_log = ConsoleLog(student)
    student.goto(invite_url)
    expect(student.get_by_role("heading", name="Join “Python 101”")).to_be_visible()
    student.get_by_test_id("signup-to-join").click()
    username = "stud" + secrets.token_hex(3)
    sign_up(student, username)
    expect(student.get_by_test_id("join")).to_be_visible()
    shot(student, "classroom-join")
    student.get_by_test_id("join").click()
    expect(student).to_have_url(re.compile(r"/sandboxes/[a-z0-9]{12}/$"), timeout=90_000)
    editor = student.locator('.cm-editor[data-path="/workspace/hello.py"] .cm-content')
    expect(editor).to_contain_text("hello from lesson 1", timeout=60_000)
    host = student.locator(".term-host .xterm-screen").first
    expect(host).to_be_visible(timeout=60_000)
    expect(student.locator(".term-host .xterm-rows").first).to_contain_text("$", timeout=60_000)
    host.click()
    student.keyboard.type("echo typed-by-$((6*7))")
    student.keyboard.press("Enter")
    expect(student.locator(".term-host .xterm-rows").first).to_contain_text("typed-by-42")
    expect(student.locator('.tree-row[data-path="/workspace/data"]')).to_be_visible()
    shot(student, "classroom-student-ide")
    sandbox_id = student.url.rstrip("/").rsplit("/", 1)[-1]

    # The teacher's roster shows the student running; "View" opens the workspace
    # read-only, with the student's terminal output live.
    page.goto(course_url)
    row = page.locator(f'tr[data-student="{username}"]')
    expect(row.locator(".status-pill")).to_have_text("running")
    shot(page, "classroom-roster")
    row.get_by_test_id("view-student").click()
    expect(page).to_have_url(re.compile(f"/sandboxes/{sandbox_id}/$"))
    expect(page.get_by_text(f"Viewing {username}'s workspace")).to_be_visible()
    expect(page.locator('.tree-row[data-path="/workspace/hello.py"]')).to_be_visible()
    expect(page.locator(".term-host .xterm-rows").first).to_contain_text(
        "typed-by-42", timeout=60_000
    )
    host.click()
    student.keyboard.type("echo live-$((5*5))")
    student.keyboard.press("Enter")
    expect(page.locator(".term-host .xterm-rows").first).to_contain_text("live-25")
    shot(page, "classroom-teacher-view")

    # The student shares a read-only view with the class; it is listed for them.
    student.goto(f"{course_url}")
    student.get_by_test_id("share-view").click()
    expect(student.locator('#shares tr[data-share="view"]')).to_contain_text(username)

    # The teacher resets the workspace: the old one is offered as a download.
    page.goto(course_url)
    expect(page.locator('#shares tr[data-share="view"]')).to_contain_text(username)
    page.locator(f'tr[data-student="{username}"]').get_by_test_id("reset-student").click()
    page.locator("#confirm-ok").click()
    link = page.get_by_test_id("archive-link")
    expect(link).to_be_visible(timeout=60_000)
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename.endswith(".tar.gz")
    shot(page, "classroom-reset")
    for errors in (log.errors, student_log.errors):
        assert not errors, errors
    student_context.close()


def test_an_expired_link_says_so(browser: Browser, server, teacher) -> None:  # type: ignore[no-untyped-def]
    page = new_context(browser, server.url).new_page()
    page.goto("/join/not-a-real-invite-token/")
    expect(page.get_by_test_id("page-error")).to_contain_text("No such invite link")
