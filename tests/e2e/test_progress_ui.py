"""Long operations in the browser are never silent: creating a sandbox from a
template shows its stages and the setup command's output, a clone shows git's own
progress, a whole-class reset counts the students, and each failure shows the
reason. Screenshots, dark and light: test-artifacts/progress-*.png."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from .conftest import ConsoleLog, new_context, shot

PASSWORD = "e2e-Progress-Horse-42"
# In the sandbox: a TCP relay from 127.0.0.1:9419 to git daemon on 9418 that passes
# the pack on slowly (about 300 KB/s), so a clone is watched as it runs.
SLOW_RELAY = """import asyncio

async def pipe(reader, writer, pause):
    while data := await reader.read(16384):
        writer.write(data)
        await writer.drain()
        await asyncio.sleep(pause)
    writer.close()

async def relay(client_reader, client_writer):
    reader, writer = await asyncio.open_connection("127.0.0.1", 9418)
    await asyncio.gather(pipe(client_reader, writer, 0), pipe(reader, client_writer, 0.05))

async def main():
    server = await asyncio.start_server(relay, "127.0.0.1", 9419)
    await server.serve_forever()

asyncio.run(main())
"""


def user_with_password(server, prefix: str) -> str:  # type: ignore[no-untyped-def]
    user = prefix + secrets.token_hex(3)
    server.token(user)
    server.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; "
        f"u = get_user_model().objects.get(username={user!r}); "
        f"u.set_password({PASSWORD!r}); u.save()",
    )
    return user


def logged_in(browser: Browser, server, user: str) -> tuple[BrowserContext, Page, ConsoleLog]:  # type: ignore[no-untyped-def]
    context = new_context(browser, server.url)
    page = context.new_page()
    log = ConsoleLog(page)
    page.goto("/accounts/login/")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).not_to_have_url(re.compile(r"/accounts/login/"))
    return context, page, log


def shots(page: Page, name: str) -> None:
    """The page as it is now, in the dark and the light theme."""
    for theme in ("dark", "light"):
        page.evaluate(f"document.documentElement.dataset.theme = {theme!r}")
        shot(page, f"{name}-{theme}")
    page.evaluate("document.documentElement.dataset.theme = 'dark'")


def template(api: httpx.Client, name: str, setup: str) -> str:
    created = api.post("/templates", json={"name": name, "setup_command": setup})
    assert created.status_code == 201, created.text
    tid = str(created.json()["id"])
    files = [("hello.py", ("hello.py", b"print('hello')\n"))]
    assert api.put(f"/templates/{tid}/files", files=files).status_code == 200
    return tid


@pytest.fixture
def person(browser: Browser, server) -> Iterator[tuple[str, BrowserContext, Page, ConsoleLog]]:  # type: ignore[no-untyped-def]
    user = user_with_password(server, "prog")
    context, page, log = logged_in(browser, server, user)
    yield user, context, page, log
    assert context.external_requests == [], context.external_requests  # type: ignore[attr-defined]
    context.close()


def test_creating_from_a_template_shows_each_stage_and_a_failure(server, person) -> None:  # type: ignore[no-untyped-def]
    user, _, page, log = person
    with server.client(user) as api:
        slow = template(
            api, "slow-setup", "echo fetching packages; sleep 4; echo building the app; sleep 4"
        )
        broken = template(api, "broken-setup", "echo 'E: no package flask9' >&2; exit 4")
    page.goto("/")
    select = page.locator("#create-template")
    expect(select.locator("option[data-template='slow-setup']")).to_have_count(1)
    select.select_option(slow)
    page.fill("#create-name", "with-setup")
    page.get_by_role("button", name="Create sandbox").click()

    box = page.get_by_test_id("create-progress")
    text = page.get_by_test_id("create-progress-text")
    expect(text).to_contain_text("Running the setup command: fetching packages", timeout=90_000)
    expect(box.locator('li[data-stage="starter"]')).to_have_attribute("data-state", "done")
    expect(box.locator('li[data-stage="setup"]')).to_have_attribute("data-state", "active")
    shots(page, "progress-template")
    expect(box).to_have_attribute("data-state", "done", timeout=60_000)
    expect(text).to_have_text("Sandbox “with-setup” is running.")
    expect(page.locator('[data-sandbox="with-setup"]')).to_be_visible()

    select.select_option(broken)
    page.fill("#create-name", "broken")
    page.get_by_role("button", name="Create sandbox").click()
    expect(box).to_have_attribute("data-state", "failed", timeout=90_000)
    expect(text).to_contain_text("Could not create the sandbox: The template's setup command")
    expect(text).to_contain_text("exit code 4")
    expect(text).to_contain_text("E: no package flask9")
    shots(page, "progress-template-failed")
    expect(page.locator('[data-sandbox="broken"]')).to_have_count(0)
    assert not log.errors, log.errors


def test_a_clone_shows_gits_progress_and_a_failure(server, person) -> None:  # type: ignore[no-untyped-def]
    user, _, page, log = person
    with server.client(user) as api:
        created = api.post("/sandboxes", json={"name": "clones", "egress": "none"})
        sid = created.json()["id"]
        api.put(
            f"/sandboxes/{sid}/files/content", params={"path": "/tmp/relay.py"}, content=SLOW_RELAY
        ).raise_for_status()
        setup = api.post(
            f"/sandboxes/{sid}/exec",
            json={
                "command": "set -e; git init -q -b main /tmp/src && cd /tmp/src"
                " && for i in $(seq 150); do head -c 10000 /dev/urandom | base64 > f$i.txt; done"
                " && git add . && git -c user.name=t -c user.email=t@t commit -qm one"
                " && git clone -q --bare /tmp/src /tmp/src.git"
            },
        ).json()
        assert setup["exit_code"] == 0, setup
        for command, port in (
            ("git daemon --export-all --base-path=/tmp --listen=127.0.0.1 --port=9418", 9418),
            ("python3 /tmp/relay.py", 9419),
        ):
            started = api.post(f"/sandboxes/{sid}/processes", json={"command": command})
            assert started.status_code == 201, started.text
            ready = api.post(
                f"/sandboxes/{sid}/processes/{started.json()['pid']}/wait-for-port",
                json={"port": port},
            )
            assert ready.status_code == 200, ready.text
    page.goto(f"/sandboxes/{sid}/")
    page.get_by_role("button", name="Clone").click()
    page.fill("#clone-url", "file:///tmp/nothing-here.git")
    page.locator("#clone-submit").click()
    expect(page.locator("#clone-error")).to_contain_text("Clone failed: git clone", timeout=60_000)
    expect(page.locator("#clone-error")).to_contain_text("does not appear to be a git repository")
    shots(page, "progress-clone-failed")

    page.fill("#clone-url", "git://127.0.0.1:9419/src.git")
    page.fill("#clone-path", "/workspace/slow-copy")
    page.locator("#clone-submit").click()
    text = page.get_by_test_id("clone-progress-text")
    expect(text).to_contain_text(re.compile(r"Receiving objects: [1-9]\d?% \(\d+ of \d+\)"))
    expect(page.locator("#clone-error")).to_be_hidden()
    shots(page, "progress-clone")
    expect(page.locator("#clone-dialog")).to_be_hidden(timeout=90_000)
    expect(page.locator('.tree-row[data-path="/workspace/slow-copy"]')).to_be_visible()
    assert not log.errors, log.errors


def test_a_class_reset_counts_students_and_shows_who_failed(
    browser: Browser, server, person
) -> None:  # type: ignore[no-untyped-def]
    user, _, page, log = person
    with server.client(user) as api:
        # The setup command keeps each good reset busy a while, so it is watched running.
        tid = template(api, "class-starter", "sleep 4")
        course = api.post("/courses", json={"name": "Progress class", "template": tid}).json()
        token = api.post(f"/courses/{course['id']}/invites", json={}).json()["token"]
    students = [f"pupil{n}{secrets.token_hex(2)}" for n in range(3)]
    for n, student in enumerate(students):
        with server.client(student) as api:
            joined = api.post(f"/invites/{token}/join")
            assert joined.status_code == 201, joined.text
            sid = joined.json()["sandbox"]
            # The first one's workspace cannot be emptied (a read-only folder).
            locked = "mkdir locked && touch locked/x && chmod 555 locked"
            command = locked if n == 0 else "echo mine > hello.py"
            out = api.post(f"/sandboxes/{sid}/exec", json={"command": command}).json()
            assert out["exit_code"] == 0, out
    page.goto(f"/courses/{course['id']}/")
    for student in students:
        expect(page.locator(f'tr[data-student="{student}"]')).to_be_visible()
    page.get_by_test_id("reset-class").click()
    page.locator("#confirm-ok").click()
    box = page.get_by_test_id("class-reset")
    # The failing student ends first; the others are still being reset.
    expect(page.get_by_test_id("class-reset-count")).to_have_text("1 of 3", timeout=60_000)
    expect(page.get_by_test_id("class-reset-text")).to_contain_text(
        f"1 of 3 students: {students[0]} failed: Could not empty the workspace"
    )
    shots(page, "progress-class-reset-running")
    expect(box).to_have_attribute("data-state", "partial", timeout=120_000)
    expect(page.get_by_test_id("class-reset-text")).to_have_text(
        "2 of 3 students reset; 1 failed (see below)."
    )
    failed = box.locator(f'li[data-student="{students[0]}"]')
    expect(failed).to_have_attribute("data-ok", "false")
    expect(failed).to_contain_text(f"{students[0]}: failed: Could not empty the workspace")
    for student in students[1:]:
        line = box.locator(f'li[data-student="{student}"]')
        expect(line).to_have_attribute("data-ok", "true")
        expect(line.get_by_role("link", name="old workspace")).to_be_visible()
    expect(page.get_by_test_id("class-reset-count")).to_have_text("3 of 3")
    shots(page, "progress-class-reset")
    assert not log.errors, log.errors
