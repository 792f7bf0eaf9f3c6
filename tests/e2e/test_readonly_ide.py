"""The IDE page in read-only mode: a course's teacher looks at a student's workspace.

The student (A) works through the API and a terminal WebSocket, as their own IDE
would; the teacher (B) watches in the browser: files, an editor that follows A's
saves, A's terminal live, and nothing that could change A's work. A stranger (C)
gets a 404 page. The classroom rows are made directly in the database (the
classroom API is not what is tested here). B also sees the web server A runs, in
the preview pane, once A shares its port. Screenshot: test-artifacts/."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Response, expect
from websockets.sync.client import ClientConnection, connect

from .conftest import ConsoleLog, new_context, shot

PASSWORD = "e2e-Read-Only-Horse-42"
NOTES = "/workspace/notes.py"


def ws_url(server, path: str) -> str:  # type: ignore[no-untyped-def]
    return server.url.replace("http://", "ws://", 1) + path


@dataclass
class Terminal:
    """A's terminal, opened the way A's own IDE opens one."""

    ws: ClientConnection
    output: bytes = b""
    events: list[dict] = field(default_factory=list)

    def type(self, text: str) -> None:
        self.ws.send(text.encode())

    def until(self, needle: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while needle.encode() not in self.output:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {needle!r} in {self.output[-400:]!r}")
            message = self.ws.recv(timeout=remaining)
            if isinstance(message, bytes):
                self.output += message
            else:
                self.events.append(json.loads(message))

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                message = self.ws.recv(timeout=remaining)
            except TimeoutError:
                return
            if isinstance(message, bytes):
                self.output += message


@dataclass
class Classroom:
    student: str
    teacher: str
    stranger: str
    api: httpx.Client  # the student's token
    sandbox_id: str
    terminal: Terminal
    server: object

    def put(self, path: str, content: bytes) -> None:
        self.api.put(
            f"/sandboxes/{self.sandbox_id}/files/content", params={"path": path}, content=content
        ).raise_for_status()

    def read(self, path: str) -> str:
        response = self.api.get(
            f"/sandboxes/{self.sandbox_id}/files/content", params={"path": path}
        )
        response.raise_for_status()
        return response.text


@pytest.fixture(scope="module")
def classroom(server) -> Iterator[Classroom]:  # type: ignore[no-untyped-def]
    tag = secrets.token_hex(3)
    student, teacher, stranger = f"stu{tag}", f"teach{tag}", f"other{tag}"
    api = server.client(student)
    made = api.post("/sandboxes", json={"name": "homework", "keep_alive": True})
    assert made.status_code in (200, 201), made.text
    sandbox_id = made.json()["id"]
    api.put(
        f"/sandboxes/{sandbox_id}/files/content",
        params={"path": NOTES},
        content=b"print('first draft')\n",
    ).raise_for_status()
    # The teacher's course enrols the student with this sandbox (rows made directly).
    server.manage(
        "shell",
        "-c",
        f"""
from django.contrib.auth import get_user_model
from sandboxes.classroom.models import Course, Enrollment, Template
from sandboxes.models import Sandbox
User = get_user_model()
student = User.objects.get(username={student!r})
people = {{}}
for name in ({teacher!r}, {stranger!r}):
    user, _ = User.objects.get_or_create(username=name)
    user.set_password({PASSWORD!r})
    user.save()
    people[name] = user
template = Template.objects.create(owner=people[{teacher!r}], name="t")
course = Course.objects.create(teacher=people[{teacher!r}], name="Intro", template=template)
Enrollment.objects.create(
    course=course, student=student, sandbox=Sandbox.objects.get(pk={sandbox_id!r})
)
""",
    )
    url = ws_url(
        server,
        f"/ws/sandboxes/{sandbox_id}/terminals/lesson?cols=90&rows=20&token={server.token(student)}",
    )
    try:
        with connect(url, open_timeout=60, max_size=None, compression=None) as ws:
            terminal = Terminal(ws)
            terminal.type("echo hello-from-$((40+2))\r")
            terminal.until("hello-from-42")
            yield Classroom(student, teacher, stranger, api, sandbox_id, terminal, server)
    finally:
        api.close()


def log_in(browser: Browser, server, username: str, base_url: str = "") -> BrowserContext:  # type: ignore[no-untyped-def]
    context = new_context(browser, base_url or server.url)
    page = context.new_page()
    page.goto("/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).not_to_have_url(re.compile(r"/accounts/login/"))
    page.close()
    return context


def refusals(page: Page) -> list[str]:
    """Every API answer of 400 or more the page got: a viewer's page never asks for
    what it may not do."""
    failed: list[str] = []

    def seen(response: Response) -> None:
        if response.status >= 400 and "/api/" in response.url:
            failed.append(f"{response.status} {response.request.method} {response.url}")

    page.on("response", seen)
    return failed


def open_view(page: Page, log: ConsoleLog, sandbox_id: str) -> None:
    """Open the read-only IDE and wait until it follows the workspace live."""
    page.goto(f"/sandboxes/{sandbox_id}/")
    try:
        expect(page.locator("#readonly-banner")).to_contain_text("updates live", timeout=60_000)
    except AssertionError as exc:
        raise AssertionError(
            f"the read-only IDE did not start; page errors: {log.errors}; "
            f"requests not answered: {log.unanswered()}; failed: {log.failed}; "
            f"console: {log.console}"
        ) from exc


def terminal_rows(page: Page, name: str):  # type: ignore[no-untyped-def]
    return page.locator(f'.term-host[data-terminal="{name}"] .xterm-rows')


def test_teacher_watches_a_students_workspace_read_only(
    classroom: Classroom, browser: Browser, server
) -> None:  # type: ignore[no-untyped-def]
    context = log_in(browser, server, classroom.teacher)
    page = context.new_page()
    log = ConsoleLog(page)
    failed = refusals(page)
    open_view(page, log, classroom.sandbox_id)

    banner = page.locator("#readonly-banner")
    expect(banner).to_contain_text(f"Viewing {classroom.student}'s workspace — read-only")
    expect(page).to_have_title(re.compile("read-only"))

    # A's terminal, attached read-only, with what A already ran on its screen.
    tab = page.locator('.term-tab[data-terminal="lesson"]')
    expect(tab.locator(".term-dot:not(.off)")).to_be_visible(timeout=60_000)
    expect(terminal_rows(page, "lesson")).to_contain_text("hello-from-42")
    # ...and what A runs now, live.
    classroom.terminal.type("echo live-$((6*7))-now\r")
    expect(terminal_rows(page, "lesson")).to_contain_text("live-42-now")

    # The file, opened read-only.
    row = page.locator(f'.tree-row[data-path="{NOTES}"]')
    row.click()
    editor = page.locator(f'.cm-editor[data-path="{NOTES}"] .cm-content')
    expect(editor).to_have_text("print('first draft')")
    expect(editor).to_have_attribute("aria-readonly", "true")
    editor.click()
    page.keyboard.press("End")
    page.keyboard.type("  # teacher was here")
    page.keyboard.press("Enter")
    page.keyboard.press("Backspace")
    expect(editor).to_have_text("print('first draft')")
    editor_tab = page.locator(f'.tab[data-path="{NOTES}"]')
    expect(editor_tab).not_to_have_class(re.compile("is-dirty"))
    page.keyboard.press("Control+s")
    expect(page.locator(".toast", has_text="Saving is not possible")).to_contain_text("read-only")
    assert classroom.read(NOTES) == "print('first draft')\n"

    # A saves: the open editor follows; A makes a file: the tree shows it.
    classroom.put(NOTES, b"print('second draft')\nprint('with more')\n")
    expect(editor).to_contain_text("print('second draft')print('with more')")
    classroom.terminal.type("echo made > /workspace/from-terminal.txt\r")
    expect(page.locator('.tree-row[data-path="/workspace/from-terminal.txt"]')).to_be_visible()

    # Nothing that writes is offered.
    for control in [
        page.get_by_role("button", name="New file"),
        page.get_by_role("button", name="New folder"),
        page.get_by_role("button", name="Upload files"),
        page.get_by_role("button", name="New terminal"),
        page.get_by_role("button", name="Run"),
        page.get_by_role("button", name="Clone"),
        page.locator("#preview"),  # nothing to preview yet (the viewer may open it)
        page.locator('.term-tab[data-terminal="lesson"] .close'),
    ]:
        expect(control).to_be_hidden()
    row.click(button="right")
    menu = page.locator("#context-menu")
    expect(menu.get_by_role("menuitem")).to_have_text(["Open", "Download", "Copy path"])
    page.keyboard.press("Escape")
    row.click()
    page.locator("#tree").focus()
    page.keyboard.press("Delete")
    page.keyboard.press("F2")
    expect(page.locator("#prompt-dialog")).not_to_be_visible()
    # The palette only lists what a viewer may do.
    page.keyboard.press("Control+Shift+P")
    commands = page.locator("#palette-list")
    expect(commands).to_contain_text("Quick Open")
    for writer in ("New File", "New Folder", "Upload", "Save", "Run", "Clone", "New Terminal"):
        expect(commands).not_to_contain_text(writer)
    page.keyboard.press("Escape")
    assert classroom.read(NOTES).startswith("print('second draft')")

    # Keys typed into the watched terminal never reach A's shell.
    page.locator('.term-host[data-terminal="lesson"] .xterm-screen').click()
    page.keyboard.type("echo sneaky-$((1+1))")
    page.keyboard.press("Enter")
    expect(page.locator(".toast", has_text="Typing in the terminal")).to_contain_text("read-only")
    classroom.terminal.type("echo after-$((2+2))\r")
    classroom.terminal.until("after-4")
    expect(terminal_rows(page, "lesson")).to_contain_text("after-4")
    classroom.terminal.drain(0.5)
    assert b"sneaky" not in classroom.terminal.output
    assert "sneaky" not in terminal_rows(page, "lesson").inner_text()

    # A download works for the viewer.
    with page.expect_download() as info:
        row.click(button="right")
        page.get_by_role("menuitem", name="Download").click()
    assert info.value.suggested_filename == "notes.py"

    # The viewer's browser state is kept apart from an owner's.
    keys = page.evaluate("() => Object.keys(localStorage)")
    assert f"ide-tabs-ro-{classroom.sandbox_id}" in keys, keys
    assert f"ide-tabs-{classroom.sandbox_id}" not in keys, keys
    assert "ide-layout" not in keys, keys

    page.evaluate("() => document.querySelectorAll('.toast').forEach((t) => t.remove())")
    path = shot(page, "ide-readonly-dark")
    shutil.copy(path, "/tmp/ide-readonly-dark.png")
    assert failed == [], failed
    # Should a write slip through anyway, the server's refusal reads plainly.
    page.evaluate("() => { window.ide.sb.mkdir('/workspace/sneaky'); }")
    expect(page.locator(".toast.error")).to_contain_text("only its owner can change it")
    assert failed == [f"403 POST {server.url}/api/v1/sandboxes/{classroom.sandbox_id}/files/mkdir"]
    assert not log.errors, log.errors
    assert context.external_requests == [], context.external_requests  # type: ignore[attr-defined]
    context.close()


def test_viewer_without_terminals_is_told_so(
    classroom: Classroom, browser: Browser, server
) -> None:  # type: ignore[no-untyped-def]
    context = log_in(browser, server, classroom.teacher)
    page = context.new_page()
    log = ConsoleLog(page)
    open_view(page, log, classroom.sandbox_id)
    expect(page.locator('.term-tab[data-terminal="lesson"] .term-dot:not(.off)')).to_be_visible(
        timeout=60_000
    )
    # A closes the terminal: the watcher sees it end; a fresh page says there is none.
    gone = classroom.api.delete(f"/sandboxes/{classroom.sandbox_id}/terminals/lesson")
    assert gone.status_code == 204, gone.text
    expect(terminal_rows(page, "lesson")).to_contain_text("the shell ended")
    expect(page.locator('.term-tab[data-terminal="lesson"]')).to_have_class(re.compile("ended"))
    shot(page, "ide-readonly-terminal-ended-dark")
    page.reload()
    expect(page.locator("#term-empty")).to_contain_text("No terminals open")
    expect(page.locator(".term-tab")).to_have_count(0)
    # A starts one again: it shows up by itself.
    url = ws_url(
        server,
        f"/ws/sandboxes/{classroom.sandbox_id}/terminals/again"
        f"?token={server.token(classroom.student)}",
    )
    with connect(url, open_timeout=60) as ws:
        again = Terminal(ws)
        again.type("echo back-$((3*3))\r")
        again.until("back-9")
        expect(page.locator('.term-tab[data-terminal="again"] .term-dot:not(.off)')).to_be_visible()
        expect(terminal_rows(page, "again")).to_contain_text("back-9")
        expect(page.locator("#term-empty")).to_be_hidden()
    shot(page, "ide-readonly-no-terminals-dark")
    # Light theme, and a tablet: the banner stays, nothing that writes comes back.
    page.locator(f'.tree-row[data-path="{NOTES}"]').click()
    page.locator(".ide-top [data-theme-toggle]").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "light")
    shot(page, "ide-readonly-light")
    page.set_viewport_size({"width": 820, "height": 1180})
    expect(page.locator("#readonly-banner")).to_be_visible()
    expect(page.get_by_role("button", name="New file")).to_be_hidden()
    shot(page, "ide-readonly-tablet-light")
    assert not log.errors, log.errors
    context.close()


def test_watching_does_not_keep_the_sandbox_awake(
    classroom: Classroom, browser: Browser, server
) -> None:  # type: ignore[no-untyped-def]
    sid = classroom.sandbox_id
    # No terminal left by earlier tests: the view must be fully attached (nothing on
    # its way in) when the student's sandbox goes to sleep, or that attach wakes it.
    for terminal in classroom.api.get(f"/sandboxes/{sid}/terminals").json()["terminals"]:
        classroom.api.delete(f"/sandboxes/{sid}/terminals/{terminal['name']}")
    context = log_in(browser, server, classroom.teacher)
    page = context.new_page()
    log = ConsoleLog(page)
    open_view(page, log, sid)
    expect(page.locator("#term-empty")).to_contain_text("No terminals open")
    banner = page.locator("#readonly-banner")
    slept = classroom.api.post(f"/sandboxes/{sid}/sleep", json={"tier": "stop"})
    assert slept.status_code == 200, slept.text
    expect(banner).to_contain_text(f"paused: {classroom.student}'s sandbox is asleep")
    expect(page.locator("#sandbox-status")).to_have_text("sleeping")
    # The open view (file watch, terminals, status) lets it sleep on.
    page.wait_for_timeout(12_000)
    assert classroom.api.get(f"/sandboxes/{sid}").json()["status"] == "sleeping"
    # The student comes back: the view follows again by itself.
    woke = classroom.api.post(f"/sandboxes/{sid}/wake")
    assert woke.status_code == 200, woke.text
    expect(banner).to_contain_text("updates live", timeout=40_000)
    classroom.put("/workspace/after-sleep.txt", b"awake\n")
    expect(page.locator('.tree-row[data-path="/workspace/after-sleep.txt"]')).to_be_visible()
    assert not log.errors, log.errors
    context.close()


def test_the_view_says_when_it_is_taken_away(
    classroom: Classroom, browser: Browser, server
) -> None:  # type: ignore[no-untyped-def]
    context = log_in(browser, server, classroom.teacher)
    page = context.new_page()
    log = ConsoleLog(page)
    open_view(page, log, classroom.sandbox_id)
    enrollment = f"Enrollment.objects.filter(sandbox_id={classroom.sandbox_id!r})"
    server.manage(
        "shell",
        "-c",
        f"from sandboxes.classroom.models import Enrollment\n{enrollment}.update(sandbox=None)",
    )
    try:
        banner = page.locator("#readonly-banner")
        expect(banner).to_contain_text("no longer shared with you", timeout=40_000)
        expect(page.locator(".toast.error")).to_contain_text("no longer shared with you")
        expect(page.locator("#sandbox-status")).to_have_text("unavailable")
        # ...and stops following: what changes now is not shown.
        classroom.put("/workspace/after-revoke.txt", b"private again\n")
        page.wait_for_timeout(3000)
        expect(page.locator('.tree-row[data-path="/workspace/after-revoke.txt"]')).to_have_count(0)
        assert not log.errors, log.errors
    finally:
        server.manage(
            "shell",
            "-c",
            "from sandboxes.classroom.models import Enrollment\n"
            f"Enrollment.objects.filter(student__username={classroom.student!r})"
            f".update(sandbox_id={classroom.sandbox_id!r})",
        )
        context.close()


def test_a_stranger_gets_a_404_page(classroom: Classroom, browser: Browser, server) -> None:  # type: ignore[no-untyped-def]
    context = log_in(browser, server, classroom.stranger)
    page = context.new_page()
    response = page.goto(f"/sandboxes/{classroom.sandbox_id}/")
    assert response is not None and response.status == 404
    expect(page.locator("#ide")).to_have_count(0)
    expect(page.locator("#readonly-banner")).to_have_count(0)
    api = page.request.get(f"/api/v1/sandboxes/{classroom.sandbox_id}/files?path=/workspace")
    assert api.status == 404
    context.close()


def test_viewer_sees_the_students_running_server(
    classroom: Classroom, browser: Browser, server
) -> None:  # type: ignore[no-untyped-def]
    sid = classroom.sandbox_id
    classroom.put("/workspace/site/index.html", b"<!doctype html><h1>Ada's app on 8130</h1>")
    for port in (8130, 8131):  # 8130 is shared below, 8131 only listens
        ran = classroom.api.post(
            f"/sandboxes/{sid}/exec",
            json={
                "command": f"setsid -f python3 -m http.server {port} --directory "
                "/workspace/site >/dev/null 2>&1; sleep 0.5"
            },
        )
        assert ran.status_code == 200, ran.text
    exposed = classroom.api.post(f"/sandboxes/{sid}/ports", json={"port": 8130})
    assert exposed.status_code == 201, exposed.text
    url = exposed.json()["url"]

    context = log_in(browser, server, classroom.teacher)
    page = context.new_page()
    log = ConsoleLog(page)
    failed = refusals(page)
    open_view(page, log, sid)
    # The pane opens by itself: the shared port to click, the unshared one named.
    pane = page.locator("#preview")
    expect(pane).to_be_visible(timeout=20_000)
    strip = page.locator("#port-strip")
    expect(strip).to_contain_text("Port 8131 is open but not shared — only its owner can expose it")
    expect(strip.locator(".port-chip")).to_have_count(1)
    chip = strip.locator('.port-chip[data-port="8130"]')
    chip.click()
    frame = page.frame_locator("#preview-frame")
    expect(frame.locator("h1")).to_have_text("Ada's app on 8130", timeout=30_000)
    expect(page.locator("#preview-address")).to_have_value(url)
    expect(chip).to_have_class(re.compile("active"))
    # Looking only: no unexpose, no copying the share link; the pane can be toggled.
    expect(page.locator("#preview-close")).to_be_hidden()
    expect(page.locator("#preview-copy")).to_be_hidden()
    expect(page.locator("#toggle-preview")).to_be_visible()
    page.evaluate("() => document.querySelectorAll('.toast').forEach((t) => t.remove())")
    path = shot(page, "ide-readonly-preview-dark")
    shutil.copy(path, "/tmp/ide-readonly-preview-dark.png")

    # In a new tab, too.
    with context.expect_page() as opened:
        page.locator("#preview-open").click()
    tab = opened.value
    expect(tab.locator("h1")).to_have_text("Ada's app on 8130", timeout=30_000)
    tab.close()

    # Asking for the unshared port (a port number in the address bar) only says why.
    address = page.locator("#preview-address")
    address.fill("8131")
    address.press("Enter")
    expect(page.locator(".toast", has_text="Port 8131")).to_contain_text(
        "open but not shared — only its owner can expose it"
    )
    ports = classroom.api.get(f"/sandboxes/{sid}/ports").json()
    assert [p["port"] for p in ports["exposed"]] == [8130]
    assert failed == [], failed  # the page never tried to expose anything

    # The student stops sharing: the viewer's pane lets go of it.
    gone = classroom.api.delete(f"/sandboxes/{sid}/ports/8130")
    assert gone.status_code == 204, gone.text
    expect(page.locator("#preview-empty")).to_be_visible(timeout=20_000)
    expect(page.locator("#preview-frame")).to_be_hidden()
    expect(strip.locator(".port-chip")).to_have_count(0)
    expect(strip).to_contain_text("Ports 8130 and 8131 are open but not shared")
    assert not log.errors, log.errors
    assert context.external_requests == [], context.external_requests  # type: ignore[attr-defined]
    context.close()


def test_viewer_opens_a_private_preview_in_a_new_tab(
    classroom: Classroom, browser: Browser, server
) -> None:  # type: ignore[no-untyped-def]
    sid = classroom.sandbox_id
    classroom.put("/workspace/private/index.html", b"<!doctype html><h1>Only for my class</h1>")
    ran = classroom.api.post(
        f"/sandboxes/{sid}/exec",
        json={
            "command": "setsid -f python3 -m http.server 8140 --directory "
            "/workspace/private >/dev/null 2>&1; sleep 0.5"
        },
    )
    assert ran.status_code == 200, ran.text
    made = classroom.api.post(f"/sandboxes/{sid}/ports", json={"port": 8140, "private": True})
    assert made.status_code == 201, made.text
    # Logged in on the IDE's origin (http://localhost:port), where the private
    # preview sends the browser to check the login.
    context = log_in(browser, server, classroom.teacher, base_url=f"http://localhost:{server.port}")
    page = context.new_page()
    log = ConsoleLog(page)
    open_view(page, log, sid)
    page.locator('#port-strip .port-chip[data-port="8140"]').click(timeout=20_000)
    # Its cookie cannot be set inside a pane of another site: the pane says so.
    empty = page.locator("#preview-empty")
    expect(empty).to_contain_text("Port 8140 is shared privately")
    expect(page.locator("#preview-address")).to_have_value(made.json()["url"])
    shot(page, "ide-readonly-private-preview-dark")
    with context.expect_page() as opened:
        empty.get_by_role("button", name="Open in a new tab").click()
    tab = opened.value
    expect(tab.locator("h1")).to_have_text("Only for my class", timeout=30_000)
    assert tab.url.startswith(made.json()["url"]), tab.url
    tab.close()
    assert not log.errors, log.errors
    context.close()
