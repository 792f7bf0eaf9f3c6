"""A CI-style job: clone a repository into a fresh sandbox, run its tests, report.

    SANDBOX_IDE_URL=... SANDBOX_IDE_TOKEN=... python ci_job.py --repo https://host/repo.git \\
        --test "python3 -m unittest -v"

Without --repo it makes a small repository inside the sandbox first (a bare repo with
one commit holding a module and its unit tests) and clones that. The exit code is the
test command's, so a CI system can use it directly; the sandbox is destroyed after.
"""

from __future__ import annotations

import argparse
import sys
import time

from sandbox_ide import Sandbox

SEED_REPO = r"""
set -e
rm -rf /tmp/ci-origin.git /tmp/ci-seed
git init -q --bare -b main /tmp/ci-origin.git
mkdir -p /tmp/ci-seed && cd /tmp/ci-seed && git init -q -b main
cat > calc.py <<'PY'
def add(a, b):
    return a + b

def mean(values):
    return sum(values) / len(values)
PY
cat > test_calc.py <<'PY'
import unittest
from calc import add, mean

class CalcTest(unittest.TestCase):
    def test_add(self):
        self.assertEqual(add(2, 3), 5)

    def test_mean(self):
        self.assertEqual(mean([1, 2, 3, 6]), 3)
PY
git add . && git -c user.name=ci -c user.email=ci@example.com commit -qm "calc with tests"
git push -q /tmp/ci-origin.git main
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", help="git URL to test (default: a repo made in the sandbox)")
    parser.add_argument("--branch")
    parser.add_argument("--test", default="python3 -m unittest -v", help="the test command")
    parser.add_argument("--sandbox", default=f"ci-{int(time.time())}")
    parser.add_argument("--keep", action="store_true", help="keep the sandbox afterwards")
    args = parser.parse_args(argv)

    sandbox = Sandbox.get_or_create(args.sandbox)
    try:
        url = args.repo
        if url is None:
            sandbox.exec(SEED_REPO, check=True)
            url = "/tmp/ci-origin.git"  # noqa: S108 - a path inside the sandbox
        depth = 1 if args.repo else None  # a shallow clone of a local path is a full one
        clone = sandbox.git.clone(url, "checkout", branch=args.branch, depth=depth)
        print(f"cloned {url} at {clone.branch} {clone.commit}", flush=True)
        started = time.monotonic()
        result = sandbox.exec(
            args.test,
            cwd="checkout",
            timeout=1800,
            on_stdout=lambda text: print(text, end="", flush=True),
            on_stderr=lambda text: print(text, end="", file=sys.stderr, flush=True),
        )
        verdict = "PASSED" if result.success else "FAILED"
        print(
            f"{verdict}: `{args.test}` exited {result.exit_code} after "
            f"{time.monotonic() - started:.1f} s"
        )
        return result.exit_code if result.exit_code is not None else 1
    finally:
        if args.keep:
            sandbox.close()
        else:
            sandbox.destroy()


if __name__ == "__main__":
    sys.exit(main())
