"""Generate the sync client from the async one (like httpcore's unasync).

python sdk/python/unasync.py           # rewrite sandbox_ide/_sync_client.py
python sdk/python/unasync.py --check   # exit 1 if it is out of date
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "sandbox_ide" / "_async_client.py"
TARGET = HERE / "sandbox_ide" / "_sync_client.py"

RULES = [
    (r"\basync def\b", "def"),
    (r"\basync with\b", "with"),
    (r"\basync for\b", "for"),
    (r"\bawait ", ""),
    (r"\bAsyncIterator\b", "Iterator"),
    (r"\bhttpx\.AsyncClient\b", "httpx.Client"),
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
HEADER = (
    '"""The sync client: GENERATED from _async_client.py by sdk/python/unasync.py '
    '(do not edit)."""\n'
)


def generate() -> str:
    text = SOURCE.read_text()
    text = text.split('"""', 2)[2].lstrip("\n")  # replace the module docstring
    for pattern, replacement in RULES:
        text = re.sub(pattern, replacement, text)
    text = HEADER + "\n" + text
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if Path(ruff).exists():
        for args in (["check", "--fix-only", "--select", "I,F401", "-q"], ["format", "-q"]):
            text = subprocess.run(
                [ruff, *args, "--stdin-filename", str(TARGET), "-"],
                input=text,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
    return text


def main() -> int:
    text = generate()
    if "--check" in sys.argv:
        if TARGET.read_text() != text:
            print(f"{TARGET} is out of date: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
