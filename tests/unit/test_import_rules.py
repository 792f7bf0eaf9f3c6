"""The layering rules, checked on the source (an AST walk, no imports run).

1. Only the classroom imports the classroom: the core (``sandboxes/``) and the
   project (``ide/``) reach it through seams it registers at ``ready()``
   (``sandboxes.policy``, the warm pool's demand, the API router, a signal).
2. No function-local imports, so none hides a cycle, except the allow-list below.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("sandboxes", "ide")
CLASSROOM = ROOT / "sandboxes" / "classroom"

# Packages that may be imported inside a function anywhere, and why.
LOCAL_PACKAGES_ALLOWED = {
    "git",  # GitPython (and its gitdb): importing it needs a git binary
    "gitdb",
    "docker",  # the docker SDK, only where the Docker backend or the image build runs
    "twisted",  # importing the reactor installs it, which only the server may decide
    "daphne",  # Daphne's internals, only under Daphne
}
# (file, imported module) pairs allowed inside a function, and why.
LOCAL_IMPORTS_ALLOWED = {
    ("sandboxes/images.py", "sandboxes.backends.docker"),  # the docker SDK behind it
    # Django is set up only once Daphne has loaded the application.
    ("ide/server.py", "django.conf"),
    ("ide/server.py", "sandboxes.reaper"),
}


def _sources() -> list[Path]:
    return [
        path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts
    ]


def _imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:  # relative: inside its own package, never the classroom from outside
        return []
    module = node.module or ""
    return [module, *(f"{module}.{alias.name}" for alias in node.names)]


def _in_ready(path: Path, stack: list[ast.AST]) -> bool:
    """``AppConfig.ready()``: Django imports apps.py before models exist, so the
    seams an app registers are imported there, as Django documents."""
    return path.name == "apps.py" and any(
        isinstance(node, ast.FunctionDef) and node.name == "ready" for node in stack
    )


def _walk(path: Path) -> list[tuple[ast.Import | ast.ImportFrom, bool, bool]]:
    """Every import with (node, inside a function, inside AppConfig.ready)."""
    found: list[tuple[ast.Import | ast.ImportFrom, bool, bool]] = []

    def visit(node: ast.AST, stack: list[ast.AST]) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            in_function = any(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) for n in stack)
            found.append((node, in_function, _in_ready(path, stack)))
        for child in ast.iter_child_nodes(node):
            visit(child, [*stack, node])

    visit(ast.parse(path.read_text(), str(path)), [])
    return found


def test_only_the_classroom_imports_the_classroom() -> None:
    offenders = []
    for path in _sources():
        if path.is_relative_to(CLASSROOM):
            continue
        for node, _, _ in _walk(path):
            if any(
                name == "sandboxes.classroom" or name.startswith("sandboxes.classroom.")
                for name in _imported(node)
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == [], f"the core imports the classroom: {offenders}"


def test_no_function_local_imports() -> None:
    offenders = []
    for path in _sources():
        where = str(path.relative_to(ROOT))
        for node, in_function, in_ready in _walk(path):
            if not in_function or in_ready:
                continue
            names = _imported(node) or [f".{getattr(node, 'module', '')}"]
            if not any(
                (where, name) in LOCAL_IMPORTS_ALLOWED
                or name.split(".")[0] in LOCAL_PACKAGES_ALLOWED
                for name in names
            ):
                offenders.append(f"{where}:{node.lineno} {names[0]}")
    assert offenders == [], f"function-local imports (hiding a cycle?): {offenders}"
