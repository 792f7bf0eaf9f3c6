"""Generate the sync client ``sandbox_ide/_sync/`` from the async one ``sandbox_ide/_async/``,
file by file (like httpcore's scripts/unasync.py).

python sdk/python/unasync.py           # rewrite sandbox_ide/_sync/
python sdk/python/unasync.py --check   # exit 1 if _sync/ is out of date or a rule is unused

Only the async package is rewritten: helpers that do no I/O live beside it in
``sandbox_ide/`` and are imported by both packages, never copied.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "sandbox_ide" / "_async"
TARGET = HERE / "sandbox_ide" / "_sync"
FORMAT_AS = HERE / "sandbox_ide" / "_sync"  # ruff's settings are those of this folder

RULES = [
    (r"\basync def\b", "def"),
    (r"\basync with\b", "with"),
    (r"\basync for\b", "for"),
    (r"\bawait ", ""),
    (r"\bcontextlib\.asynccontextmanager\b", "contextlib.contextmanager"),
    (r"\b_async_io\b", "_sync_io"),
    (r"\baiter_lines\b", "iter_lines"),
    (r"\baiter_bytes\b", "iter_bytes"),
    (r"\baread\b", "read"),
    (r"\baclose\b", "close"),
    (r"__aenter__", "__enter__"),
    (r"__aexit__", "__exit__"),
    (r"\bAsync(?=[A-Z])", ""),
]


def header(name: str) -> str:
    return (
        f"# GENERATED from sandbox_ide/_async/{name} by sdk/python/unasync.py: "
        "edit that file, then run\n# `python sdk/python/unasync.py`.\n"
    )


def ruff() -> str:
    found = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(found).exists():
        sys.exit("unasync.py needs ruff (pip install ruff) to format what it generates.")
    return found


def unasync(path: Path, used: set[str]) -> str:
    """The sync twin of one async module, formatted; ``used`` collects the rules that applied."""
    text = path.read_text()
    for pattern, replacement in RULES:
        text, count = re.subn(pattern, replacement, text)
        if count:
            used.add(pattern)
    text = header(path.name) + text
    for args in (["check", "--fix-only", "--select", "I,F401", "-q"], ["format", "-q"]):
        text = subprocess.run(
            [ruff(), *args, "--stdin-filename", str(FORMAT_AS / path.name), "-"],
            input=text,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    return text


def generate() -> tuple[dict[str, str], list[str]]:
    """Every file of the sync package by name, and the rules that never applied."""
    used: set[str] = set()
    files = {path.name: unasync(path, used) for path in sorted(SOURCE.glob("*.py"))}
    return files, [pattern for pattern, _ in RULES if pattern not in used]


def main() -> int:
    files, unused = generate()
    if unused:
        print(f"unasync.py: rules that match nothing, remove them: {unused}", file=sys.stderr)
        return 1
    existing = {path.name for path in TARGET.glob("*.py")}
    if "--check" in sys.argv:
        stale = sorted(
            name
            for name in existing | set(files)
            if name not in files
            or name not in existing
            or (TARGET / name).read_text() != files[name]
        )
        if stale:
            print(
                f"sandbox_ide/_sync/ is out of date ({', '.join(stale)}): run "
                "python sdk/python/unasync.py",
                file=sys.stderr,
            )
            return 1
        return 0
    TARGET.mkdir(exist_ok=True)
    for name in existing - set(files):
        (TARGET / name).unlink()
    for name, text in files.items():
        (TARGET / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
