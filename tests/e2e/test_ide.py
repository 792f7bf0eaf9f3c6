"""The web IDE, driven like a user would: sign up, create a sandbox, edit and save a
file, use terminals (and find them again after a reload), preview a web server,
clone a repository, upload and download files. Screenshots: test-artifacts/."""

from __future__ import annotations

import gzip
import io
import json
import re
import secrets
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from .conftest import ConsoleLog, new_context, shot

PASSWORD = "e2e-Correct-Horse-42"


@dataclass
class Account:
    username: str
    context: BrowserContext
    api: httpx.Client
    sandbox_id: str


def terminal_text(page: Page, name: str) -> str:
    return page.locator(f'.term-host[data-terminal="{name}"] .xterm-rows').inner_text()


def type_in_terminal(page: Page, name: str, command: str) -> None:
    page.locator(f'.term-tab[data-terminal="{name}"]').click()
    page.locator(f'.term-host[data-terminal="{name}"] .xterm-screen').click()
    page.keyboard.type(command)
    page.keyboard.press("Enter")


_open_pages: list[Page] = []


@pytest.fixture(autouse=True)
def _close_pages() -> Iterator[None]:
    yield
    while _open_pages:
        _open_pages.pop().close()


def click_terminal_text(page: Page, name: str, text: str, last: bool = False) -> None:
    """Hover and click on `text` where xterm.js drew it (links need a real mouse)."""
    box = page.evaluate(
        """([name, text, last]) => {
        const rows = document.querySelector(`.term-host[data-terminal="${name}"] .xterm-rows`);
        const walker = document.createTreeWalker(rows, NodeFilter.SHOW_TEXT);
        let found = null;
        for (let n = walker.nextNode(); n; n = walker.nextNode()) {
            const i = n.textContent.indexOf(text);
            if (i < 0) continue;
            const range = document.createRange();
            range.setStart(n, i);
            range.setEnd(n, i + text.length);
            const b = range.getBoundingClientRect();
            found = {x: b.x + Math.min(b.width / 2, 40), y: b.y + b.height / 2};
            if (!last) break;
        }
        return found;
    }""",
        [name, text, last],
    )
    assert box, f"{text!r} is not on terminal {name}'s screen"
    page.mouse.move(box["x"] - 5, box["y"])
    page.mouse.move(box["x"], box["y"])
    page.wait_for_timeout(300)  # xterm.js finds links on hover
    page.mouse.click(box["x"], box["y"])


def open_ide(account: Account) -> tuple[Page, ConsoleLog]:
    page = account.context.new_page()
    _open_pages.append(page)
    log = ConsoleLog(page)
    page.goto(f"/sandboxes/{account.sandbox_id}/")
    try:
        expect(page.locator('.term-tab[data-terminal="t1"] .term-dot:not(.off)')).to_be_visible(
            timeout=60_000  # the machine may be busy: a cold start can take a while
        )
    except AssertionError as exc:
        raise AssertionError(
            f"the IDE did not start; page errors: {log.errors}; "
            f"requests not answered: {log.unanswered()}; failed: {log.failed}; "
            f"console: {log.console}"
        ) from exc
    return page, log


@pytest.fixture(scope="module")
def account(browser: Browser, server) -> Iterator[Account]:  # type: ignore[no-untyped-def]
    """A new user who signed up in the browser, made an API token on the account
    page, and created a sandbox from the dashboard."""
    context = new_context(browser, server.url)
    page = context.new_page()
    log = ConsoleLog(page)
    username = "e2e" + secrets.token_hex(3)

    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.get_by_role("link", name="Sign up").first.click()
    page.fill("input[name=username]", username)
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_text(f"Welcome, {username}!")).to_be_visible()
    expect(page.get_by_text("No sandboxes yet.")).to_be_visible()

    page.get_by_role("link", name="Account").click()
    page.fill("input[name=name]", "e2e")
    page.get_by_role("button", name="Create token").click()
    token = page.get_by_test_id("new-token").inner_text().strip()
    assert token.startswith("sbx_")
    page.reload()
    expect(page.get_by_test_id("new-token")).to_have_count(0)  # shown once

    page.goto("/")
    page.fill("#create-name", "e2e-box")
    page.get_by_role("button", name="Create sandbox").click()
    card = page.locator('[data-sandbox="e2e-box"]')
    expect(card.locator(".status-pill")).to_have_text("running", timeout=90_000)
    expect(page.get_by_text("Sandbox “e2e-box” is running.")).to_be_visible()
    shot(page, "dashboard-dark")
    sandbox_id = card.get_attribute("data-id")
    assert sandbox_id
    assert not log.errors, log.errors
    page.close()

    api = httpx.Client(
        base_url=server.url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    yield Account(username, context, api, sandbox_id)
    api.close()
    assert context.external_requests == [], context.external_requests  # type: ignore[attr-defined]
    context.close()


def test_signup_token_and_dashboard(account: Account) -> None:
    """The token made on the account page works for programs and sees the sandbox."""
    listed = account.api.get("/sandboxes").json()["sandboxes"]
    assert [s["name"] for s in listed] == ["e2e-box"]
    assert listed[0]["status"] == "running"


def test_create_edit_and_save_a_file(account: Account) -> None:
    page, log = open_ide(account)
    page.get_by_role("button", name="New file").click()
    page.fill("#prompt-input", "hello.py")
    page.keyboard.press("Enter")
    editor = page.locator('.cm-editor[data-path="/workspace/hello.py"] .cm-content')
    expect(editor).to_be_visible()
    expect(page.locator('.tree-row[data-path="/workspace/hello.py"]')).to_be_visible()
    editor.click()
    page.keyboard.type("print('saved from the browser', 6 * 7)")
    tab = page.locator('.tab[data-path="/workspace/hello.py"]')
    expect(tab).to_have_class(re.compile("is-dirty"))
    page.keyboard.press("Control+s")
    expect(tab).not_to_have_class(re.compile("is-dirty"))
    content = account.api.get(
        f"/sandboxes/{account.sandbox_id}/files/content", params={"path": "/workspace/hello.py"}
    )
    assert content.status_code == 200
    assert content.text == "print('saved from the browser', 6 * 7)"

    # Run it: live output in the output panel.
    page.get_by_role("button", name="Run").click()
    output = page.locator("#output-log")
    expect(output).to_contain_text("saved from the browser 42")
    expect(output).to_contain_text("exited with code 0")
    shot(page, "ide-editor-run-dark")
    assert not log.errors, log.errors

    # Unsaved work: leaving the page asks first.
    editor.click()
    page.keyboard.press("End")
    page.keyboard.type("  # not saved")
    expect(tab).to_have_class(re.compile("is-dirty"))
    dialogs: list[str] = []

    def on_dialog(dialog) -> None:  # type: ignore[no-untyped-def]
        dialogs.append(dialog.type)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.close(run_before_unload=True)
    page.wait_for_timeout(500)
    assert dialogs == ["beforeunload"]


def test_terminal_output_survives_a_reload(account: Account) -> None:
    page, log = open_ide(account)
    type_in_terminal(page, "t1", "echo terminal-$((6*7))-ok")
    expect(page.locator('.term-host[data-terminal="t1"] .xterm-rows')).to_contain_text(
        "terminal-42-ok"
    )
    page.locator("#new-term").click()
    expect(page.locator('.term-tab[data-terminal="t2"] .term-dot:not(.off)')).to_be_visible()
    type_in_terminal(page, "t2", "echo second-$((2+3))")
    expect(page.locator('.term-host[data-terminal="t2"] .xterm-rows')).to_contain_text("second-5")

    page.reload()
    # Both terminals come back, re-attached with their screen replayed.
    expect(page.locator('.term-tab[data-terminal="t2"] .term-dot:not(.off)')).to_be_visible()
    page.locator('.term-tab[data-terminal="t1"]').click()
    expect(page.locator('.term-host[data-terminal="t1"] .xterm-rows')).to_contain_text(
        "terminal-42-ok"
    )
    page.locator('.term-tab[data-terminal="t2"]').click()
    expect(page.locator('.term-host[data-terminal="t2"] .xterm-rows')).to_contain_text("second-5")
    # ...and still live.
    type_in_terminal(page, "t1", "echo after-reload-$((1+1))")
    expect(page.locator('.term-host[data-terminal="t1"] .xterm-rows')).to_contain_text(
        "after-reload-2"
    )
    # A shell that exits says so; a key starts a fresh one under the same name.
    type_in_terminal(page, "t2", "exit 3")
    t2 = page.locator('.term-host[data-terminal="t2"] .xterm-rows')
    expect(t2).to_contain_text("process exited with code 3")
    page.keyboard.press("Enter")
    expect(page.locator('.term-tab[data-terminal="t2"] .term-dot:not(.off)')).to_be_visible()
    type_in_terminal(page, "t2", "echo fresh-$((3*3))")
    expect(t2).to_contain_text("fresh-9")

    # Files a program creates show up in the tree at once (file watching).
    type_in_terminal(page, "t1", "mkdir -p made/by && echo x > made/by-shell.txt")
    expect(page.locator('.tree-row[data-path="/workspace/made"]')).to_be_visible(timeout=3000)
    page.locator('.tree-row[data-path="/workspace/made"]').click()
    expect(page.locator('.tree-row[data-path="/workspace/made/by-shell.txt"]')).to_be_visible()
    type_in_terminal(page, "t1", "rm -r made")
    expect(page.locator('.tree-row[data-path="/workspace/made"]')).to_have_count(0, timeout=3000)
    shot(page, "ide-terminal-dark")
    assert not log.errors, log.errors


def screen_rows(page: Page, name: str) -> list[str]:
    """The rows xterm.js shows for terminal ``name`` (its DOM renderer's), as text."""
    rows: list[str] = page.evaluate(
        """(name) => [...document.querySelectorAll(
            `.term-host[data-terminal="${name}"] .xterm-rows > div`)]
            .map((row) => row.textContent.replace(/\\s+$/, ""))""",
        name,
    )
    return rows


def settled_rows(page: Page, name: str) -> list[str]:
    """The rows once they have stopped changing for a second."""
    rows = screen_rows(page, name)
    for _ in range(30):
        page.wait_for_timeout(1000)
        now = screen_rows(page, name)
        if now == rows:
            return rows
        rows = now
    raise AssertionError(f"terminal {name} never settled: {rows}")


def test_vim_comes_back_as_it_was_after_a_reload(account: Account) -> None:
    page, log = open_ide(account)
    page.locator("#new-term").click()
    name = page.locator(".term-tab.active").get_attribute("data-terminal")
    assert name
    host = page.locator(f'.term-host[data-terminal="{name}"] .xterm-rows')
    expect(page.locator(f'.term-tab[data-terminal="{name}"] .term-dot:not(.off)')).to_be_visible()
    type_in_terminal(
        page, name, "seq -f 'vim line %g' 1 300 > /tmp/e2e.txt && vim.tiny -u NONE /tmp/e2e.txt"
    )
    expect(host).to_contain_text("vim line 2")
    page.keyboard.type("150Gwwiedited by hand ")
    page.keyboard.press("Escape")
    expect(host).to_contain_text("vim line edited by hand 150")
    before = settled_rows(page, name)
    assert any(row.startswith("vim line edited by hand 150") for row in before)

    page.reload()
    expect(page.locator(f'.term-tab[data-terminal="{name}"] .term-dot:not(.off)')).to_be_visible()
    page.locator(f'.term-tab[data-terminal="{name}"]').click()
    expect(host).to_contain_text("vim line edited by hand 150")
    assert settled_rows(page, name) == before
    shot(page, "ide-terminal-vim-after-reload")
    # vim goes on where it was: it quits, and the shell's screen is back.
    page.locator(f'.term-host[data-terminal="{name}"] .xterm-screen').click()
    page.keyboard.type(":q!")
    page.keyboard.press("Enter")
    expect(host).not_to_contain_text("vim line 149")
    type_in_terminal(page, name, "echo vim-done-$((3+4))")
    expect(host).to_contain_text("vim-done-7")
    assert not log.errors, log.errors


def test_preview_of_a_web_server(account: Account) -> None:
    page, log = open_ide(account)
    account.api.put(
        f"/sandboxes/{account.sandbox_id}/files/content",
        params={"path": "/workspace/site/index.html"},
        content=b"<!doctype html><h1>Hello from port 8123</h1>",
    ).raise_for_status()
    page.locator("#new-term").click()
    name = page.locator(".term-tab.active").get_attribute("data-terminal")
    assert name
    type_in_terminal(page, name, "cd /workspace/site && python3 -m http.server 8123")
    host = page.locator(f'.term-host[data-terminal="{name}"] .xterm-rows')
    expect(host).to_contain_text("Serving HTTP", timeout=30_000)

    chip = page.locator('.port-chip[data-port="8123"]')
    expect(chip).to_be_visible(timeout=20_000)
    chip.click()
    frame = page.frame_locator("#preview-frame")
    expect(frame.locator("h1")).to_have_text("Hello from port 8123", timeout=30_000)
    address = page.locator("#preview-address").input_value()
    assert re.match(r"^http://8123-[a-z0-9]+-[^.]+\.preview\.localhost:\d+/$", address), address
    shot(page, "ide-preview-dark")

    # A local link printed in a terminal opens that port's preview when clicked:
    # http.server printed "http://0.0.0.0:8123/"; and a bare localhost:PORT/path.
    page.locator("#preview-frame").evaluate("f => { f.src = 'about:blank'; }")
    page.locator("#preview-address").fill("")
    click_terminal_text(page, name, "http://0.0.0.0:8123/")
    expect(frame.locator("h1")).to_have_text("Hello from port 8123", timeout=30_000)
    expect(page.locator("#preview-address")).to_have_value(address)
    page.keyboard.press("Control+c")
    type_in_terminal(page, name, "echo 'try localhost:8123/index.html now'")
    expect(host).to_contain_text("try localhost:8123/index.html now")
    page.locator("#preview-frame").evaluate("f => { f.src = 'about:blank'; }")
    click_terminal_text(page, name, "localhost:8123/index.html", last=True)
    expect(page.locator("#preview-address")).to_have_value(address + "index.html")

    # Unexpose: the share link stops working.
    page.locator("#preview-close").click()
    page.locator("#prompt-ok").click()
    expect(page.locator("#preview-empty")).to_be_visible()
    ports = account.api.get(f"/sandboxes/{account.sandbox_id}/ports").json()
    assert all(p["port"] != 8123 for p in ports["exposed"])
    assert not log.errors, log.errors


def test_clone_a_repository_and_see_its_status(account: Account) -> None:
    setup = account.api.post(
        f"/sandboxes/{account.sandbox_id}/exec",
        json={
            "command": "set -e; rm -rf /tmp/origin.git /tmp/seed;"
            " git init -q --bare /tmp/origin.git; git init -q -b main /tmp/seed;"
            " cd /tmp/seed; echo '# Demo' > README.md;"
            " git add README.md; git -c user.email=e2e@example.com -c user.name=e2e"
            " commit -qm init; git push -q /tmp/origin.git main"
        },
    ).json()
    assert setup["exit_code"] == 0, setup
    page, log = open_ide(account)

    page.get_by_role("button", name="Clone").click()
    page.fill("#clone-url", "/tmp/does-not-exist.git")
    page.locator("#clone-submit").click()
    expect(page.locator("#clone-error")).to_contain_text("Clone failed")

    page.fill("#clone-url", "/tmp/origin.git")
    page.fill("#clone-branch", "main")
    page.fill("#clone-path", "/workspace/demo-repo")
    page.locator("#clone-submit").click()
    expect(page.locator("#clone-dialog")).to_be_hidden(timeout=60_000)
    expect(page.locator('.tree-row[data-path="/workspace/demo-repo/README.md"]')).to_be_visible()

    account.api.put(
        f"/sandboxes/{account.sandbox_id}/files/content",
        params={"path": "/workspace/demo-repo/README.md"},
        content=b"# Demo, changed\n",
    ).raise_for_status()
    page.get_by_role("tab", name="Source control").click()
    expect(page.locator("#git-path")).to_have_value("/workspace/demo-repo")
    page.locator("#git-refresh").click()
    expect(page.locator(".git-branch")).to_contain_text("main")
    expect(page.locator('.git-file[data-path="README.md"]')).to_be_visible()
    # A change made while the view is open shows up by itself.
    account.api.put(
        f"/sandboxes/{account.sandbox_id}/files/content",
        params={"path": "/workspace/demo-repo/notes.txt"},
        content=b"new\n",
    ).raise_for_status()
    expect(page.locator('.git-file[data-path="notes.txt"]')).to_be_visible(timeout=5000)
    page.locator('.git-file[data-path="README.md"]').click()
    expect(page.locator('.tab.active[data-path="/workspace/demo-repo/README.md"]')).to_be_visible()
    shot(page, "ide-git-dark")
    assert not log.errors, log.errors


def put_file(account: Account, path: str, content: bytes) -> None:
    account.api.put(
        f"/sandboxes/{account.sandbox_id}/files/content", params={"path": path}, content=content
    ).raise_for_status()


def test_upload_by_drop_and_download(account: Account) -> None:
    put_file(account, "/workspace/site/index.html", b"<h1>Hello from port 8123</h1>")
    page, log = open_ide(account)
    page.locator("#tree .tree-row").first.wait_for()
    # Drop a file from "the desktop" onto the tree.
    page.evaluate(
        """() => {
        const dt = new DataTransfer();
        const text = "uploaded by drag and drop\\n";
        dt.items.add(new File([text], "dropped.txt", {type: "text/plain"}));
        const tree = document.getElementById("tree");
        const init = {dataTransfer: dt, bubbles: true, cancelable: true};
        tree.dispatchEvent(new DragEvent("dragover", init));
        tree.dispatchEvent(new DragEvent("drop", init));
    }"""
    )
    row = page.locator('.tree-row[data-path="/workspace/dropped.txt"]')
    expect(row).to_be_visible()
    got = account.api.get(
        f"/sandboxes/{account.sandbox_id}/files/content", params={"path": "/workspace/dropped.txt"}
    )
    assert got.text == "uploaded by drag and drop\n"

    # Upload through the toolbar button's file picker too.
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Upload files").click()
    chooser.value.set_files(
        files=[{"name": "picked.bin", "mimeType": "application/octet-stream", "buffer": b"\0\1\2"}]
    )
    expect(page.locator('.tree-row[data-path="/workspace/picked.bin"]')).to_be_visible()

    # Download the file...
    row.click(button="right")
    with page.expect_download() as info:
        page.get_by_role("menuitem", name="Download").click()
    assert info.value.suggested_filename == "dropped.txt"
    assert Path(info.value.path()).read_bytes() == b"uploaded by drag and drop\n"

    # ...and a folder as .tar.gz.
    page.locator('.tree-row[data-path="/workspace/site"]').click(button="right")
    with page.expect_download() as info:
        page.get_by_role("menuitem", name="Download as .tar.gz").click()
    data = Path(info.value.path()).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        assert any(n.endswith("index.html") for n in tar.getnames()), tar.getnames()

    # Move by drag and drop onto a folder; rename; delete.
    row.drag_to(page.locator('.tree-row[data-path="/workspace/site"]'))
    expect(page.locator('.tree-row[data-path="/workspace/site/dropped.txt"]')).to_be_visible()
    expect(row).to_have_count(0)
    moved = account.api.get(
        f"/sandboxes/{account.sandbox_id}/files/content",
        params={"path": "/workspace/site/dropped.txt"},
    )
    assert moved.text == "uploaded by drag and drop\n"
    page.locator('.tree-row[data-path="/workspace/picked.bin"]').click(button="right")
    page.get_by_role("menuitem", name="Rename…").click()
    page.fill("#prompt-input", "renamed.bin")
    page.keyboard.press("Enter")
    renamed = page.locator('.tree-row[data-path="/workspace/renamed.bin"]')
    expect(renamed).to_be_visible()
    renamed.click(button="right")
    page.get_by_role("menuitem", name="Delete").click()
    page.locator("#prompt-ok").click()
    expect(renamed).to_have_count(0)
    gone = account.api.get(
        f"/sandboxes/{account.sandbox_id}/files/content", params={"path": "/workspace/renamed.bin"}
    )
    assert gone.status_code == 404

    # A file too large for the editor is offered as a download instead.
    big = account.api.post(
        f"/sandboxes/{account.sandbox_id}/exec",
        json={"command": "head -c 3000000 /dev/zero | tr '\\0' a > /workspace/big.txt"},
    ).json()
    assert big["exit_code"] == 0, big
    page.locator('.tree-row[data-path="/workspace/big.txt"]').click()
    expect(page.get_by_text("too large to edit in the browser")).to_be_visible()
    expect(page.locator(".cm-editor[data-path='/workspace/big.txt']")).to_have_count(0)

    # A binary file opens read-only with a download offer, never in the editor.
    account.api.put(
        f"/sandboxes/{account.sandbox_id}/files/content",
        params={"path": "/workspace/blob.bin"},
        content=b"\0\1\2",
    ).raise_for_status()
    page.locator('.tree-row[data-path="/workspace/blob.bin"]').click()
    expect(page.get_by_text("Binary file, 3 B: shown read-only.")).to_be_visible()
    assert not log.errors, log.errors


def test_palette_quick_open_and_themes(account: Account) -> None:
    put_file(account, "/workspace/hello.py", b"print('hello')\n")
    put_file(account, "/workspace/site/index.html", b"<h1>Hello from port 8123</h1>")
    page, log = open_ide(account)
    page.locator("#tree .tree-row").first.wait_for()
    page.locator("#tree").click()
    page.keyboard.press("Control+p")
    page.keyboard.type("hello")
    expect(page.locator('#palette-list li[data-path="/workspace/hello.py"]')).to_be_visible()
    page.keyboard.press("Enter")
    expect(page.locator('.tab.active[data-path="/workspace/hello.py"]')).to_be_visible()

    terminals = page.locator(".term-tab").count()
    page.keyboard.press("Control+Shift+P")
    page.keyboard.type("new terminal")
    page.keyboard.press("Enter")
    expect(page.locator(".term-tab")).to_have_count(terminals + 1)
    expect(page.locator(".term-tab.active .term-dot:not(.off)")).to_be_visible()
    shot(page, "ide-full-dark")

    page.locator("[data-theme-toggle]").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "light")
    shot(page, "ide-full-light")
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", "light")  # remembered
    page.locator("[data-theme-toggle]").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")

    page.set_viewport_size({"width": 820, "height": 1100})  # a tablet
    expect(page.locator("#sidebar")).to_be_hidden()  # the side bar folds away
    shot(page, "ide-tablet-dark")
    expect(page.locator("#editor-area")).to_be_visible()
    expect(page.locator("#preview")).to_be_visible()
    page.locator("#toggle-sidebar").click()
    expect(page.locator("#sidebar")).to_be_visible()  # ...and floats over the editor
    shot(page, "ide-tablet-sidebar-dark")
    site = page.locator('.tree-row[data-path="/workspace/site"]')
    if site.get_attribute("aria-expanded") != "true":
        site.click()
    page.locator('.tree-row[data-path="/workspace/site/index.html"]').click()
    expect(page.locator('.tab.active[data-path="/workspace/site/index.html"]')).to_be_visible()
    expect(page.locator("#sidebar")).to_be_hidden()  # opening a file folds it again
    assert not log.errors, log.errors


def test_dashboard_sleep_and_delete(account: Account) -> None:
    page = account.context.new_page()
    _open_pages.append(page)
    log = ConsoleLog(page)
    page.goto("/")
    # The API's own message shows when it refuses (the field's pattern is bypassed here).
    page.locator("#create-name").evaluate("el => el.removeAttribute('pattern')")
    page.fill("#create-name", "Not_Valid")
    page.get_by_role("button", name="Create sandbox").click()
    expect(page.locator("#dash-message .flash-error")).to_contain_text(
        "Could not create the sandbox: name"
    )
    page.fill("#create-name", "scratch")
    page.get_by_role("button", name="Create sandbox").click()
    card = page.locator('[data-sandbox="scratch"]')
    expect(card.locator(".status-pill")).to_have_text("running", timeout=90_000)
    card.get_by_role("button", name="Sleep").click()
    expect(card.locator(".status-pill")).to_have_text("sleeping", timeout=60_000)
    # Opening a sleeping sandbox wakes it: its terminal works and the status says so.
    card.get_by_test_id("open").click()
    expect(page.locator("#sandbox-status")).to_have_text("running", timeout=60_000)
    expect(page.locator('.term-tab[data-terminal="t1"] .term-dot:not(.off)')).to_be_visible()
    page.go_back()
    expect(card.locator(".status-pill")).to_have_text("running")
    card.get_by_role("button", name="Delete").click()
    expect(page.locator("#confirm-dialog")).to_be_visible()
    expect(page.locator("#confirm-title")).to_have_text("Delete “scratch”?")
    page.locator("#confirm-dialog").get_by_role("button", name="Cancel").click()
    expect(card).to_be_visible()
    card.get_by_role("button", name="Delete").click()
    page.locator("#confirm-ok").click()
    expect(card).to_have_count(0, timeout=60_000)
    names = [s["name"] for s in account.api.get("/sandboxes").json()["sandboxes"]]
    assert names == ["e2e-box"]
    page.emulate_media(color_scheme="light")
    page.evaluate("() => localStorage.removeItem('ide-theme')")
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", "light")  # follows the system
    shot(page, "dashboard-light")
    page.goto("/accounts/")
    shot(page, "account-light")
    assert not log.errors, log.errors


def test_panes_resize_and_remember(account: Account) -> None:
    page, log = open_ide(account)
    sidebar = page.locator("#sidebar")
    before = sidebar.bounding_box()
    gutter = page.locator('[data-gutter="sidebar"]').bounding_box()
    assert before and gutter
    x, y = gutter["x"] + 2, gutter["y"] + 200
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 60, y, steps=5)
    page.mouse.up()
    after = sidebar.bounding_box()
    assert after and abs(after["width"] - (before["width"] + 60)) <= 3
    page.reload()
    expect(page.locator('.term-tab[data-terminal="t1"] .term-dot:not(.off)')).to_be_visible()
    again = sidebar.bounding_box()
    assert again and abs(again["width"] - after["width"]) <= 1
    # the side bar hides and comes back with its button
    page.locator("#toggle-sidebar").click()
    expect(sidebar).to_be_hidden()
    page.locator("#toggle-sidebar").click()
    expect(sidebar).to_be_visible()
    assert not log.errors, log.errors


def test_login_logout_and_token_revocation(account: Account, browser: Browser, server) -> None:  # type: ignore[no-untyped-def]
    context = new_context(browser, server.url, theme="light")
    page = context.new_page()
    log = ConsoleLog(page)
    try:
        page.goto("/accounts/login/")
        page.fill("input[name=username]", account.username)
        page.fill("input[name=password]", "not the password")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("alert")).to_contain_text("correct username and password")
        page.fill("input[name=password]", PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.locator('[data-sandbox="e2e-box"]')).to_be_visible()

        page.get_by_role("link", name="Account").click()
        page.fill("input[name=name]", "temporary")
        page.get_by_role("button", name="Create token").click()
        token = page.get_by_test_id("new-token").inner_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(server.url + "/api/v1/sandboxes", headers=headers).status_code == 200
        page.on("dialog", lambda dialog: dialog.accept())
        page.get_by_role("row", name=re.compile("temporary")).get_by_role(
            "button", name="Revoke"
        ).click()
        expect(page.get_by_text("revoked")).to_be_visible()
        revoked = httpx.get(server.url + "/api/v1/sandboxes", headers=headers)
        assert revoked.status_code == 401
        assert revoked.json()["error"]["code"] == "invalid_token"
        shot(page, "account-light")

        page.get_by_test_id("logout").click()
        expect(page).to_have_url(re.compile(r"/accounts/login/"))
        page.goto("/")
        expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/"))
        assert not log.errors, log.errors
    finally:
        context.close()


def test_start_up_never_takes_the_keyboard_from_the_user(account: Account) -> None:
    """The saved editor tab and the terminal listing arrive whenever they do; a user
    who clicked into the interpreter meanwhile keeps the panel and the keyboard."""
    path = "/workspace/focus_kept.py"
    account.api.put(
        f"/sandboxes/{account.sandbox_id}/files/content", params={"path": path}, content=b"a = 1\n"
    )
    page = account.context.new_page()
    _open_pages.append(page)
    log = ConsoleLog(page)
    tabs = json.dumps({"open": [path], "active": path})
    page.add_init_script(f"localStorage.setItem('ide-tabs-{account.sandbox_id}', {tabs!r})")
    held: list[Route] = []
    slow = re.compile(r"/files/content\?path=%2Fworkspace%2Ffocus_kept|/terminals$")
    page.route(slow, lambda route: held.append(route))
    page.goto(f"/sandboxes/{account.sandbox_id}/")
    page.locator("#interp-tab").click()
    page.locator("#interp-editor .cm-content").click()
    page.keyboard.type("print('kept',")
    assert len(held) == 2, [r.request.url for r in held]
    for route in held:
        route.continue_()
    page.unroute(slow)
    expect(page.locator('.term-tab[data-terminal="t1"] .term-dot:not(.off)')).to_be_visible(
        timeout=60_000
    )
    expect(page.locator(f'.tab[data-path="{path}"]')).to_be_visible()
    expect(page.locator("#editor-area .cm-content").first).to_contain_text("a = 1")
    page.keyboard.type(" 6 * 7)")
    page.keyboard.press("Shift+Enter")
    expect(page.locator("#interp-cells .cell-out").last).to_have_text("kept 42\n", timeout=60_000)
    expect(page.locator("#interpreter")).to_be_visible()
    expect(page.locator(f'.tab[data-path="{path}"]')).not_to_have_class(re.compile("is-dirty"))
    assert not log.errors, log.errors


def test_code_interpreter_rich_output(account: Account) -> None:
    page, log = open_ide(account)
    page.locator("#interp-tab").click()
    cell = page.locator("#interp-editor .cm-content")
    cell.click()
    page.keyboard.type("x = 6 * 7; print('x is', x)")
    page.keyboard.press("Shift+Enter")
    cells = page.locator("#interp-cells")
    expect(cells.locator(".cell-out").last).to_have_text("x is 42\n", timeout=60_000)
    cell.click()
    page.keyboard.type(
        "import pandas as pd, matplotlib.pyplot as plt; plt.plot([1, 3, 2]); "
        "pd.DataFrame({'answer': [x, x + 1]})"
    )
    page.locator("#interp-run").click()
    expect(cells.locator("img").last).to_be_visible(timeout=60_000)
    table = page.frame_locator("#interp-cells iframe.html-out >> nth=-1").locator("table")
    expect(table).to_contain_text("43")
    small = page.locator("#panel").bounding_box()
    page.locator("#panel-max").click()  # room for the figure
    big = page.locator("#panel").bounding_box()
    assert small and big and big["height"] > small["height"] + 200
    cells.locator("img").last.scroll_into_view_if_needed()
    shot(page, "ide-interpreter-dark")
    page.keyboard.press("Control+j")
    expect(page.locator("#editor-area .tabbar")).to_be_visible()
    cell.click()
    page.keyboard.type("1 / 0")
    page.keyboard.press("Shift+Enter")
    expect(cells.locator(".cell-out.error").last).to_contain_text("ZeroDivisionError")
    assert not log.errors, log.errors


def test_admin_site_for_staff(account: Account, browser: Browser, server) -> None:  # type: ignore[no-untyped-def]
    server.env["DJANGO_SUPERUSER_PASSWORD"] = PASSWORD
    try:
        server.manage("createsuperuser", "--noinput", "--username", "staff", "--email", "s@x.io")
    finally:
        server.env.pop("DJANGO_SUPERUSER_PASSWORD")
    context = new_context(browser, server.url)
    page = context.new_page()
    try:
        page.goto("/accounts/login/")
        page.fill("input[name=username]", "staff")
        page.fill("input[name=password]", PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.get_by_role("link", name="Admin").click()
        expect(page.get_by_role("link", name="Api tokens")).to_be_visible()
        page.goto("/admin/sandboxes/sandbox/")
        expect(page.get_by_text("e2e-box")).to_be_visible()
        page.goto("/admin/sandboxes/apitoken/")
        expect(page.get_by_text(account.username).first).to_be_visible()
    finally:
        context.close()
