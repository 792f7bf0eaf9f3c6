"""Uploads and downloads in the IDE show their progress: a 200 MB upload moves the
bar, a cancelled one leaves nothing behind, many dropped files (or a chosen folder)
show as one card with a count, a failure says why, and a download shows progress
too. Every card the page shows is recorded as it changes (a MutationObserver), so
the test sees the intermediate states however fast the machine is. Screenshots of
the card in both themes: test-artifacts/transfer-progress-{dark,light}.png."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, CDPSession, Page, expect

from tests.server import LiveServer, free_port

from .conftest import ConsoleLog, new_context, shot

PASSWORD = "e2e-Transfer-Horse-42"
BIG = 200 * 1024 * 1024

# Records every state of every progress card into window.transfers.
RECORDER = """() => {
  window.transfers = [];
  const seen = new Map();
  const record = () => {
    for (const card of document.querySelectorAll(".progress-card")) {
      const state = {
        kind: card.dataset.progress, state: card.dataset.state,
        title: card.querySelector(".progress-title").textContent,
        percent: card.querySelector(".progress-percent").textContent,
        detail: card.querySelector(".progress-detail").textContent,
      };
      const key = JSON.stringify(state);
      if (seen.get(card) !== key) { seen.set(card, key); window.transfers.push(state); }
    }
  };
  new MutationObserver(record).observe(document.body,
    {subtree: true, childList: true, characterData: true, attributes: true});
}"""


@dataclass
class Ide:
    page: Page
    log: ConsoleLog
    api: httpx.Client
    sandbox_id: str
    cdp: CDPSession

    def states(self, kind: str) -> list[dict[str, str]]:
        return [s for s in self.page.evaluate("window.transfers") if s["kind"] == kind]

    def forget(self) -> None:
        self.page.evaluate("window.transfers = []")
        self.page.locator(".progress-card .progress-close").evaluate_all(
            "buttons => buttons.forEach((b) => b.click())"
        )

    def entries(self, path: str) -> dict[str, dict]:
        listing = self.api.get(f"/sandboxes/{self.sandbox_id}/files", params={"path": path})
        assert listing.status_code == 200, listing.text
        return {e["name"]: e for e in listing.json()["entries"]}

    def throttle(self, upload: int = -1, download: int = -1) -> None:
        """Bytes per second the browser may send / receive (-1: no limit)."""
        self.cdp.send(
            "Network.emulateNetworkConditions",
            {
                "offline": False,
                "latency": 0,
                "uploadThroughput": upload,
                "downloadThroughput": download,
            },
        )


@pytest.fixture(scope="module")
def ide(browser: Browser, server) -> Iterator[Ide]:  # type: ignore[no-untyped-def]
    """A user signed up in the browser, with a sandbox open in the IDE."""
    username = "xfer" + secrets.token_hex(3)
    context: BrowserContext = new_context(browser, server.url)
    page = context.new_page()
    page.goto("/accounts/signup/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_text(f"Welcome, {username}!")).to_be_visible()
    api = httpx.Client(
        base_url=server.url + "/api/v1",
        headers={"Authorization": f"Bearer {server.token(username)}"},
        timeout=120,
    )
    made = api.post("/sandboxes", json={"name": "transfers", "keep_alive": True})
    assert made.status_code in (200, 201), made.text
    sandbox_id = made.json()["id"]
    api.post(f"/sandboxes/{sandbox_id}/files/mkdir", json={"path": "/workspace/inbox"})
    log = ConsoleLog(page)
    page.goto(f"/sandboxes/{sandbox_id}/")
    expect(page.locator('.tree-row[data-path="/workspace/inbox"]')).to_be_visible(timeout=60_000)
    page.evaluate(RECORDER)
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    yield Ide(page, log, api, sandbox_id, cdp)
    assert not log.errors, log.errors
    api.close()
    context.close()


@pytest.fixture(scope="module")
def big_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 MB files (sparse: they take no disk space here)."""
    folder = tmp_path_factory.mktemp("big")
    for name in ("big.bin", "cancelled.bin"):
        with open(folder / name, "wb") as f:
            f.truncate(BIG)
    return folder


def percents(states: list[dict[str, str]]) -> set[int]:
    """The percentages shown while the transfer was running, strictly between 0 and 100."""
    found = {
        int(s["percent"].rstrip("%")) for s in states if s["percent"] and s["state"] == "running"
    }
    return {p for p in found if 0 < p < 100}


def card(page: Page, kind: str):  # type: ignore[no-untyped-def]
    return page.locator(f'.progress-card[data-progress="{kind}"]').last


def drop_on_tree(page: Page, name: str, size: int) -> None:
    page.evaluate(
        """([name, size]) => {
        const dt = new DataTransfer();
        dt.items.add(new File([new Uint8Array(size)], name));
        const tree = document.getElementById("tree");
        const init = {dataTransfer: dt, bubbles: true, cancelable: true};
        tree.dispatchEvent(new DragEvent("dragover", init));
        tree.dispatchEvent(new DragEvent("drop", init));
    }""",
        [name, size],
    )


def test_a_200_megabyte_upload_shows_its_progress(ide: Ide, big_files: Path) -> None:
    page = ide.page
    ide.forget()
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Upload files").click()
    chooser.value.set_files(str(big_files / "big.bin"))
    upload = card(page, "upload")
    expect(upload).to_have_attribute("data-state", "done", timeout=180_000)
    expect(upload.locator(".progress-detail")).to_have_text(
        "Uploaded big.bin (200 MB) to /workspace."
    )
    states = ide.states("upload")
    assert len(percents(states)) >= 2, states
    assert states[0]["title"] == "Uploading big.bin to /workspace"
    details = " | ".join(s["detail"] for s in states)
    assert re.search(r"\d+ MB of 200 MB · [\d.]+ [KMG]?B/s", details), details
    expect(page.locator('.tree-row[data-path="/workspace/big.bin"]')).to_be_visible()
    assert ide.entries("/workspace")["big.bin"]["size"] == BIG


def test_a_cancelled_upload_leaves_no_file(ide: Ide, big_files: Path) -> None:
    page = ide.page
    ide.forget()
    ide.throttle(upload=8 * 1024 * 1024)  # long enough to look at and cancel
    try:
        page.locator('.tree-row[data-path="/workspace/inbox"]').click(button="right")
        with page.expect_file_chooser() as chooser:
            page.get_by_role("menuitem", name="Upload files here…").click()
        chooser.value.set_files(str(big_files / "cancelled.bin"))
        upload = card(page, "upload")
        expect(upload.locator(".progress-percent")).to_have_text(re.compile(r"^([2-9]|\d\d)%$"))
        expect(upload.locator(".progress-detail")).to_contain_text("MB/s")
        shot(page, "transfer-progress-dark")
        page.locator("[data-theme-toggle]").click()
        expect(page.locator("html")).to_have_attribute("data-theme", "light")
        shot(page, "transfer-progress-light")
        page.locator("[data-theme-toggle]").click()
        upload.get_by_role("button", name="Cancel").click()
        expect(upload).to_have_attribute("data-state", "cancelled")
        expect(upload.locator(".progress-title")).to_have_text("Upload cancelled")
        expect(upload.locator(".progress-detail")).to_have_text("Nothing was saved.")
    finally:
        ide.throttle()
    assert "cancelled.bin" not in ide.entries("/workspace/inbox")
    left = ide.api.post(
        f"/sandboxes/{ide.sandbox_id}/exec", json={"command": ["ls", "-A", "/workspace/inbox"]}
    ).json()
    assert left["stdout"] == "", left  # not even a temporary file
    gone = ide.api.get(
        f"/sandboxes/{ide.sandbox_id}/files/content",
        params={"path": "/workspace/inbox/cancelled.bin"},
    )
    assert gone.status_code == 404


def test_many_dropped_files_show_one_progress_with_a_count(ide: Ide) -> None:
    page = ide.page
    ide.forget()
    sizes = [3_000_000, 1_500_000, 2_000_000, 700_000, 2_500_000, 4_000]
    ide.throttle(upload=4 * 1024 * 1024)  # slow enough to catch the count half-way
    page.evaluate(
        """(sizes) => {
        const dt = new DataTransfer();
        sizes.forEach((n, i) => {
            dt.items.add(new File([new Uint8Array(n).fill(65 + i)], `part${i}.dat`));
        });
        const row = document.querySelector('.tree-row[data-path="/workspace/inbox"]');
        const init = {dataTransfer: dt, bubbles: true, cancelable: true};
        row.dispatchEvent(new DragEvent("dragover", init));
        row.dispatchEvent(new DragEvent("drop", init));
    }""",
        sizes,
    )
    upload = card(page, "upload")
    try:
        expect(upload.locator(".progress-detail")).to_have_text(re.compile(r"^[1-5] of 6 files"))
        shot(page, "transfer-count-dark")
    finally:
        ide.throttle()
    expect(upload).to_have_attribute("data-state", "done", timeout=120_000)
    expect(upload.locator(".progress-detail")).to_have_text(
        "Uploaded 6 files (9.3 MB) to /workspace/inbox."
    )
    assert page.locator(".progress-card").count() == 1  # one card for the lot
    states = ide.states("upload")
    assert {s["title"] for s in states} == {"Uploading 6 files to /workspace/inbox"}
    counts = {m[1] for s in states if (m := re.match(r"(\d) of 6 files · ", s["detail"]))}
    assert {"0", "3", "5"} <= counts, states  # the count moved one file at a time
    entries = ide.entries("/workspace/inbox")
    assert {f"part{i}.dat": n for i, n in enumerate(sizes)} == {
        name: e["size"] for name, e in entries.items()
    }
    expect(page.locator('.tree-row[data-path="/workspace/inbox/part5.dat"]')).to_be_visible()


def test_a_chosen_folder_keeps_its_layout(ide: Ide, tmp_path: Path) -> None:
    page = ide.page
    ide.forget()
    root = tmp_path / "project"
    (root / "src" / "lib").mkdir(parents=True)
    (root / "README.md").write_text("# project\n")
    (root / "src" / "main.py").write_text("print('hi')\n")
    (root / "src" / "lib" / "util.py").write_text("X = 1\n")
    box = page.locator("#tree").bounding_box()
    assert box
    page.mouse.click(box["x"] + 40, box["y"] + box["height"] - 10, button="right")  # below the rows
    with page.expect_file_chooser() as chooser:
        page.get_by_role("menuitem", name="Upload a folder here…").click()
    chooser.value.set_files(str(root))
    upload = card(page, "upload")
    expect(upload).to_have_attribute("data-state", "done")
    expect(upload.locator(".progress-title")).to_have_text("Uploading 3 files to /workspace")
    read = ide.api.get(
        f"/sandboxes/{ide.sandbox_id}/files/content",
        params={"path": "/workspace/project/src/lib/util.py"},
    )
    assert read.text == "X = 1\n"
    expect(page.locator('.tree-row[data-path="/workspace/project"]')).to_be_visible()


# A folder dragged from the desktop, as the browser hands it to the page: entries
# (webkitGetAsEntry) whose directories are read in batches. A script cannot put a
# folder in a real DataTransfer, so the drop event carries this stand-in.
FOLDER_DROP = """() => {
  const file = (name, text) => ({isFile: true, isDirectory: false, name,
    file: (ok) => ok(new File([text], name))});
  const dir = (name, children) => ({isFile: false, isDirectory: true, name,
    createReader: () => {
      let left = [...children];
      const readEntries = (ok) => { ok(left.slice(0, 2)); left = left.slice(2); };
      return {readEntries};
    }});
  const album = dir("album", [
    file("notes.txt", "notes"),
    dir("photos", [file("a.jpg", "A"), file("b.jpg", "BB"), file("c.jpg", "CCC")]),
    dir("empty", []),
  ]);
  const dataTransfer = {
    types: ["Files"], files: [new File([""], "album")], getData: () => "",
    items: [{kind: "file", webkitGetAsEntry: () => album, getAsFile: () => null}],
  };
  const tree = document.getElementById("tree");
  for (const type of ["dragover", "drop"]) {
    const event = new DragEvent(type, {bubbles: true, cancelable: true});
    Object.defineProperty(event, "dataTransfer", {value: dataTransfer});
    tree.dispatchEvent(event);
  }
}"""


def test_a_dropped_folder_keeps_its_layout(ide: Ide) -> None:
    page = ide.page
    ide.forget()
    page.evaluate(FOLDER_DROP)
    upload = card(page, "upload")
    expect(upload).to_have_attribute("data-state", "done")
    expect(upload.locator(".progress-title")).to_have_text("Uploading 4 files to /workspace")
    album = ide.entries("/workspace/album")
    assert {n: e["type"] for n, e in album.items()} == {
        "notes.txt": "file",
        "photos": "directory",
        "empty": "directory",
    }
    photos = ide.entries("/workspace/album/photos")
    assert {n: e["size"] for n, e in photos.items()} == {"a.jpg": 1, "b.jpg": 2, "c.jpg": 3}
    expect(page.locator('.tree-row[data-path="/workspace/album"]')).to_be_visible()


def test_a_failed_upload_says_why(ide: Ide) -> None:
    page = ide.page
    ide.forget()
    ide.api.post(f"/sandboxes/{ide.sandbox_id}/files/mkdir", json={"path": "/workspace/clash"})
    drop_on_tree(page, "clash", 12)
    upload = card(page, "upload")
    expect(upload).to_have_attribute("data-state", "error")
    expect(upload.locator(".progress-detail")).to_have_text(
        "clash could not be uploaded: /workspace/clash is a directory, not a file."
    )
    expect(upload.locator(".progress-title")).to_have_text("Upload failed")
    expect(upload.get_by_role("alert")).to_be_visible()
    shot(page, "transfer-error-dark")
    upload.get_by_role("button", name="Dismiss").click()
    expect(upload).to_have_count(0)


def test_an_upload_over_the_limit_says_why(ide: Ide, server: LiveServer) -> None:
    """A server whose FILES_MAX_UPLOAD is 1 MB (beside the main one, same database and
    sandbox: the browser's session works on both) refuses a 3 MB file from its
    headers; the card says so in the API's words."""
    port = free_port()
    small = LiveServer(
        url=f"http://127.0.0.1:{port}",
        port=port,
        env={**server.env, "FILES_MAX_UPLOAD": "1m", "ALLOW_UNCOORDINATED_SERVERS": "1"},
        var_dir=server.var_dir,
        prefix=server.prefix,
        tokens=server.tokens,
    )
    small.start()
    page = ide.page.context.new_page()
    try:
        page.goto(f"{small.url}/sandboxes/{ide.sandbox_id}/")
        expect(page.locator('.tree-row[data-path="/workspace/inbox"]')).to_be_visible()
        drop_on_tree(page, "huge.bin", 3_000_000)
        upload = card(page, "upload")
        expect(upload).to_have_attribute("data-state", "error")
        expect(upload.locator(".progress-detail")).to_have_text(
            "huge.bin could not be uploaded: The body (3000000 bytes) is larger than "
            "FILES_MAX_UPLOAD (1048576 bytes)."
        )
    finally:
        page.close()
        small.stop()
    assert "huge.bin" not in ide.entries("/workspace")


def test_a_download_shows_its_progress(ide: Ide) -> None:
    page = ide.page
    ide.forget()
    if "big.bin" not in ide.entries("/workspace"):  # run alone: make the file here
        ide.api.put(
            f"/sandboxes/{ide.sandbox_id}/files/content",
            params={"path": "/workspace/big.bin"},
            content=iter([b"\0" * (1024 * 1024)] * 200),
        ).raise_for_status()
        page.locator('[data-tree-action="refresh"]').click()
    page.locator('.tree-row[data-path="/workspace/big.bin"]').click(button="right")
    with page.expect_download(timeout=180_000) as info:
        page.get_by_role("menuitem", name="Download", exact=True).click()
    assert info.value.suggested_filename == "big.bin"
    assert Path(info.value.path()).stat().st_size == BIG
    download = card(page, "download")
    expect(download).to_have_attribute("data-state", "done")
    expect(download.locator(".progress-detail")).to_have_text("Downloaded big.bin (200 MB).")
    states = ide.states("download")
    assert percents(states), states
    assert any(re.search(r"MB of 200 MB", s["detail"]) for s in states), states

    # A folder comes as a .tar.gz streamed while it is made: no total, so the card
    # counts bytes under a moving stripe, then says how much it was.
    ide.forget()
    page.locator('.tree-row[data-path="/workspace/inbox"]').click(button="right")
    with page.expect_download() as info:
        page.get_by_role("menuitem", name="Download as .tar.gz").click()
    assert info.value.suggested_filename == "inbox.tar.gz"
    archive = card(page, "download")
    expect(archive).to_have_attribute("data-state", "done")
    expect(archive.locator(".progress-detail")).to_have_text(
        re.compile(r"^Downloaded inbox\.tar\.gz \([\d.]+ [KM]?B\)\.$")
    )
    assert Path(info.value.path()).read_bytes()[:2] == b"\x1f\x8b"  # gzip
