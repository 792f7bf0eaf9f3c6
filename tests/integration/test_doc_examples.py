"""The documentation's examples, run as written against a live server.

The convention (docs/architecture.md, "Examples in the docs"):

- Fenced ```sh blocks in README.md, docs/*.md and sdk/python/README.md run in file
  order, in one ``bash`` per file with ``set -euo pipefail``, in a scratch directory
  that mirrors the checkout (``.venv/bin/...``, ``manage.py``, ``./sdk/python``
  resolve; files the examples make land there). A block may set variables that later
  blocks of the same file use.
- The shell has the fresh test server's environment (so ``manage.py`` works on its
  database) with ``API``, ``TOKEN`` (a fresh user's), ``SERVER`` and
  ``SANDBOX_IDE_URL`` exported; ``http://127.0.0.1:8000``, ``make run``'s address, in
  a block means the test server.
- ``curl`` fails the block on an HTTP status of 400 or more, ``-f`` or not (the test
  adds ``--fail-with-body`` when the command has no ``-f`` of its own), so an example
  that a server refuses cannot pass. An example showing a refusal on purpose ends in
  ``|| true``.
- ``<!-- example: not run (reason) -->`` on the line before a block skips it; the
  reason is required.
- ```python blocks in README.md and docs/*.md must compile; those in README.md and
  docs/sdk.md also run, in order with the shell blocks of their file (heredoc to the
  virtualenv's Python).

A failure names the file, the block's first line, the failing command as the page
writes it, and the block's output.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from tests.server import ROOT, LiveServer, running_server

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "sdk/python/README.md"]
PYTHON_COMPILED = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON_RUN = {ROOT / "README.md", ROOT / "docs/sdk.md"}
MAKE_RUN_URL = "http://127.0.0.1:8000"
NOT_RUN = re.compile(r"<!--\s*example:\s*not run\s*\((?P<reason>.*?)\)\s*-->")
PYTHON_LINE = re.compile(r'File "<stdin>", line (\d+)')
MARKER = "\x1edoc-example-block "
HEREDOC = "DOC_EXAMPLE_PYTHON"
FILE_TIMEOUT = 840

# Without its own -f, a curl gets --fail-with-body (the body of a refusal still shows);
# --show-error prints curl's reason despite -s.
# A failure returns to the page's line, so the ERR trap reports that line.
CURL_STRICT = r"""curl() {
  local arg strict=--fail-with-body
  for arg in "$@"; do
    case $arg in --fail|--fail-with-body|--no-fail|-[!-]*f*) strict=;; esac
  done
  command curl --show-error ${strict:+"$strict"} "$@" || return
}"""
PREAMBLE = (
    "set -euo pipefail\n"
    f"{CURL_STRICT}\n"
    'trap \'echo "$LINENO" > "$DOC_EXAMPLE_FAILED"\' ERR\n'
    '. "$DOC_EXAMPLE_SCRIPT"\n'
)


@dataclass(frozen=True)
class Block:
    page: Path
    language: str
    line: int  # 1-based line of the first line of code (after the fence)
    code: str
    skip_reason: str | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """Every fenced block of a page, with whether a not-run marker precedes it."""
    tokens = MarkdownIt("commonmark").parse(page.read_text())
    found = []
    for i, token in enumerate(tokens):
        if token.type != "fence" or token.map is None:
            continue
        marker = None
        if i and tokens[i - 1].type == "html_block":
            marker = NOT_RUN.search(tokens[i - 1].content)
        found.append(
            Block(
                page=page,
                language=token.info.split()[0] if token.info.strip() else "",
                line=token.map[0] + 2,
                code=token.content,
                skip_reason=marker["reason"].strip() if marker else None,
            )
        )
    return found


def stray_markers(page: Path) -> list[str]:
    """Example markers that are malformed or skip nothing."""
    tokens = MarkdownIt("commonmark").parse(page.read_text())
    problems = []
    for i, token in enumerate(tokens):
        if token.type != "html_block" or "example:" not in token.content or not token.map:
            continue
        where = f"{page.relative_to(ROOT)}:{token.map[0] + 1}"
        marker = NOT_RUN.search(token.content)
        if marker is None or not marker["reason"].strip():
            problems.append(f"{where}: write the marker as <!-- example: not run (reason) -->")
        elif i + 1 == len(tokens) or tokens[i + 1].type != "fence":
            problems.append(f"{where}: the marker must stand right before the block it skips")
    return problems


def runnable(block: Block) -> bool:
    if block.skip_reason is not None:
        return False
    return block.language == "sh" or (block.language == "python" and block.page in PYTHON_RUN)


def script(page: Path, server_url: str) -> str:
    """The page's runnable blocks as one bash script whose line N is the page's line N,
    so bash's $LINENO points into the page."""
    lines = [""] * (len(page.read_text().splitlines()) + 1)
    for block in filter(runnable, blocks(page)):
        code = block.code.replace(MAKE_RUN_URL, server_url).splitlines()
        fence = block.line - 2
        lines[fence] = f"printf '{MARKER}%d\\n' {block.line}"
        if block.language == "python":
            lines[fence] += f"; \"$DOC_EXAMPLE_PYTHON\" - <<'{HEREDOC}'"
            lines[fence + 1 + len(code)] = HEREDOC
        lines[fence + 1 : fence + 1 + len(code)] = code
    return "\n".join(lines) + "\n"


def scratch_checkout() -> Path:
    """A directory that looks like the checkout (top-level entries linked), so examples
    written for the repository's root run there without writing into it."""
    where = Path(tempfile.mkdtemp(prefix="doc-examples-"))
    for entry in ROOT.iterdir():
        if entry.name not in (".git", "var"):
            (where / entry.name).symlink_to(entry)
    return where


def shell_env(server: LiveServer, token: str, workdir: Path) -> dict[str, str]:
    """The server's environment, as a fresh shell on its machine would have it."""
    active = os.environ.get("VIRTUAL_ENV", str(ROOT / ".venv"))
    venv_bins = {str(ROOT / ".venv" / "bin"), os.path.join(active, "bin")}
    sdk_settings = ("SANDBOX_IDE_URL", "SANDBOX_IDE_TOKEN", "VIRTUAL_ENV")
    env = {k: v for k, v in server.env.items() if k not in sdk_settings}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", os.defpath).split(os.pathsep) if p not in venv_bins
    )
    env.update(
        API=f"{server.url}/api/v1",
        TOKEN=token,
        SERVER=server.url,
        SANDBOX_IDE_URL=server.url,  # the SDK's default address, make run's
        HOME=str(workdir),
        DOC_EXAMPLE_PYTHON=sys.executable,
        DOC_EXAMPLE_SCRIPT=str(workdir / ".doc-example.sh"),
        DOC_EXAMPLE_FAILED=str(workdir / ".doc-example-failed"),
    )
    return env


def run_page(page: Path, server: LiveServer, token: str) -> None:
    workdir = scratch_checkout()
    try:
        env = shell_env(server, token, workdir)
        Path(env["DOC_EXAMPLE_SCRIPT"]).write_text(script(page, server.url))
        process = subprocess.Popen(
            ["bash", "--noprofile", "--norc", "-c", PREAMBLE],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            raw, _ = process.communicate(timeout=FILE_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raw, _ = process.communicate()
        output = raw.decode(errors="replace")
        if process.returncode:
            failed = Path(env["DOC_EXAMPLE_FAILED"])
            line = failed.read_text().strip() if failed.exists() else ""
            at = int(line) if line.isdigit() else None
            pytest.fail(failure(page, process.returncode, output, at), pytrace=False)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def failure(page: Path, status: int, output: str, at: int | None) -> str:
    """Which block failed, at which line, with what it printed."""
    chunks = output.split(MARKER)
    started, _, printed = chunks[-1].partition("\n")
    block = next((b for b in blocks(page) if str(b.line) == started), None)
    if block is None:
        return f"{page.relative_to(ROOT)}: the examples failed before any block ran:\n{output}"
    text = page.read_text().splitlines()
    how = f"timed out after {FILE_TIMEOUT} s" if status < 0 else f"exited with {status}"
    lines = [f"{block.where}: the ```{block.language} example {how}"]
    if block.language == "python" and (lines_seen := PYTHON_LINE.findall(printed)):
        at = block.line + int(lines_seen[-1]) - 1
    if at is not None and block.line <= at < block.line + len(block.code.splitlines()):
        start = end = at
        while start > block.line and text[start - 2].endswith("\\"):
            start -= 1
        while text[end - 1].endswith("\\") and end < len(text):
            end += 1
        command = text[start - 1 : end]
        lines.append(f"at line {start}:")
        lines += [f"    {line}" for line in command]
    lines.append("the block:")
    lines += [f"  {block.line + i:4d}  {code}" for i, code in enumerate(block.code.splitlines())]
    lines.append("its output:")
    lines += [f"    {line}" for line in printed.rstrip("\n").splitlines()[-60:]] or ["    (none)"]
    if status == 22 or "curl: (22)" in printed:
        lines.append("(curl's exit 22: the server answered with an HTTP status of 400 or more)")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def docs_server(sandbox_image: str) -> Iterator[LiveServer]:
    """A server as fresh as `make run`'s: its own database, no users yet."""
    with running_server("sbxdocs") as server:
        yield server


@pytest.mark.timeout(FILE_TIMEOUT + 60)
@pytest.mark.parametrize(
    "page",
    [page for page in PAGES if any(map(runnable, blocks(page)))],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_page_examples_run(page: Path, docs_server: LiveServer) -> None:
    run_page(page, docs_server, docs_server.token("reader"))


@pytest.mark.parametrize("page", PYTHON_COMPILED, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_examples_compile(page: Path) -> None:
    for block in blocks(page):
        if block.language == "python":
            try:
                compile(block.code, block.where, "exec")
            except SyntaxError as error:
                pytest.fail(f"{block.where}: the ```python example does not compile: {error}")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_markers_and_fences_follow_the_convention(page: Path) -> None:
    """A shell example is fenced as ```sh (or it would not run), and a not-run marker
    gives its reason and stands right before a block."""
    problems = stray_markers(page) + [
        f"{block.where}: fence shell examples as ```sh so that the docs test runs them"
        for block in blocks(page)
        if block.language in ("bash", "shell", "console", "zsh", "shell-session")
    ]
    assert not problems, "\n".join(problems)
