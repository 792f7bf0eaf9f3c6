"""The layering rules, checked on the source (an AST walk, no imports run).

1. Only the classroom imports the classroom: the core (``sandboxes/``) and the
   project (``ide/``) reach it through seams it registers at ``ready()``
   (``sandboxes.policy``, the warm pool's demand, the API router, a signal).
2. No function-local imports, so none hides a cycle, except the allow-list below.
3. The server and the project import only the protocol from the agent
   (``container.agent.protocol``, standard library only, built into both ends), never
   the agent's internals, which run inside the sandbox.
4. Inside the agent every import points down: no cycle. ``execs`` runs commands in
   a session's state; ``sessions`` keeps that state without knowing how they run.
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
    ("ide/server.py", "ide.background"),
    # a service's driver, loaded only when its URL names that service
    ("ide/preflight.py", "psycopg"),
    ("ide/preflight.py", "redis"),
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


# --------------------------------------------------------------------------- the agent

AGENT = ROOT / "container" / "agent"
PROTOCOL = "container.agent.protocol"


def _absolute_imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``path``; ``from X import y`` counts
    as importing ``X.y`` as well (``y`` may be a module)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def _agent_internal(name: str) -> bool:
    inside = name.startswith("container.agent.") or name == "container.agent"
    return inside and name != PROTOCOL and not name.startswith(PROTOCOL + ".")


def test_the_server_imports_only_the_agent_protocol() -> None:
    offenders = []
    for package in ("sandboxes", "ide"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, name in _absolute_imports(path):
                # ``from container.agent import protocol`` names the package itself too
                if _agent_internal(name) and name != "container.agent":
                    offenders.append(f"{path.relative_to(ROOT)}:{line} {name}")
    assert offenders == [], f"agent internals imported outside the agent: {offenders}"


def _agent_graph() -> dict[str, set[str]]:
    """Each agent module and the agent modules it imports (at any level)."""
    modules = {path.stem for path in AGENT.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in sorted(AGENT.glob("*.py")):
        edges = set()
        for _, name in _absolute_imports(path):
            if name.startswith("container.agent."):
                target = name.split(".")[2]
                if target in modules and target != path.stem:
                    edges.add(target)
        graph[path.stem] = edges
    return graph


def test_execs_and_sessions_do_not_import_each_other() -> None:
    graph = _agent_graph()
    assert "execs" not in graph["sessions"], "sessions keeps state; it must not run commands"
    assert not ("sessions" in graph["execs"] and "execs" in graph["sessions"])


def test_agent_imports_point_down() -> None:
    graph = _agent_graph()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = " -> ".join([*path[path.index(module) :], module])
            raise AssertionError(f"import cycle in the agent: {cycle}")
        if module in done:
            return
        for target in sorted(graph[module]):
            visit(target, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
