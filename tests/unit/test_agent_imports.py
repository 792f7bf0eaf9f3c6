"""The agent's import rules, checked on the source (an AST walk, no imports run).

1. The server and the project import only the protocol from the agent
   (``container.agent.protocol``, standard library only, built into both ends),
   never the agent's internals, which run inside the sandbox.
2. Inside the agent every import points down: no cycle, so no module needs a
   function-local import to break one. ``execs`` runs commands in a session's state
   and ``sessions`` keeps that state without knowing how commands run.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "container" / "agent"
PROTOCOL = "container.agent.protocol"


def _imports(path: Path) -> list[tuple[int, str]]:
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
            for line, name in _imports(path):
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
        for _, name in _imports(path):
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
