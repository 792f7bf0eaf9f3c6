"""A teacher's grader: run your tests against every student's work, print a table.

    SANDBOX_IDE_URL=... SANDBOX_IDE_TOKEN=<teacher's token> \\
        python classroom_grader.py --course "Python 101" --tests test_main.py

For each student on the course's roster it reads their ``main.py`` (the teacher may
read a student's sandbox, never change it), copies it beside your test file into a
folder of its own in YOUR grading sandbox, runs ``python3 -m unittest`` there, and
prints one row per student. Students' sandboxes are only read: nothing of theirs is
run, written or woken beyond reading the file. The exit code is 0 when every
student passed.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path

from sandbox_ide import Course, NotFoundError, Sandbox, SandboxIDEError


def grade(grader: Sandbox, username: str, code: bytes, tests: Path, file: str) -> tuple[str, str]:
    """Run the tests against one student's file in the grading sandbox:
    (passed/total, result)."""
    folder = f"grading/{username}"
    if grader.files.exists(folder):  # a fresh folder: nothing left from the last run
        grader.files.remove(folder, recursive=True)
    grader.files.write(f"{folder}/{file}", code)
    grader.files.write(f"{folder}/{tests.name}", tests.read_bytes())
    module = tests.stem
    result = grader.exec(f"python3 -m unittest -v {shlex.quote(module)}", cwd=folder, timeout=120)
    if result.timed_out:
        return "-", "timed out"
    ran = re.search(r"^Ran (\d+) tests?", result.stderr, re.MULTILINE)
    total = int(ran.group(1)) if ran else 0
    bad = re.search(r"^FAILED \(([^)]*)\)", result.stderr, re.MULTILINE)
    failed = sum(int(n) for n in re.findall(r"\d+", bad.group(1))) if bad else 0
    if result.success:
        return f"{total}/{total}", "passed"
    if not ran:  # the tests did not even load (e.g. a syntax error in the student's file)
        last = result.stderr.strip().splitlines()[-1:] or ["no output"]
        return "0/?", f"error: {last[0][:60]}"
    return f"{total - failed}/{total}", f"FAILED ({bad.group(1) if bad else 'error'})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--course", required=True, help="the course's name or id")
    parser.add_argument("--tests", default="test_main.py", help="your unittest file (local)")
    parser.add_argument("--file", default="main.py", help="the student's file to grade")
    parser.add_argument("--sandbox", default="grader", help="your grading sandbox")
    args = parser.parse_args(argv)
    tests = Path(args.tests)
    if not tests.is_file():
        print(f"No test file {tests}: pass --tests PATH.", file=sys.stderr)
        return 2

    rows = [("STUDENT", "SANDBOX", "TESTS", "RESULT")]
    all_passed = True
    with Course.from_name(args.course) as course, Sandbox.get_or_create(args.sandbox) as grader:
        for student in sorted(course.roster(), key=lambda s: s.username):
            if not student.sandbox_id:
                rows.append((student.username, "-", "-", "no sandbox"))
                all_passed = False
                continue
            try:
                with Sandbox.connect(student.sandbox_id) as theirs:  # read-only for us
                    code = theirs.files.read(args.file)
            except NotFoundError:
                rows.append((student.username, student.sandbox_id, "-", f"no {args.file}"))
                all_passed = False
                continue
            except SandboxIDEError as exc:
                rows.append((student.username, student.sandbox_id, "-", f"error: {exc.code}"))
                all_passed = False
                continue
            score, result = grade(grader, student.username, code, tests, args.file)
            all_passed = all_passed and result == "passed"
            rows.append((student.username, student.sandbox_id, score, result))

    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0 if all_passed else 1


if __name__ == "__main__":
    sys.exit(main())
