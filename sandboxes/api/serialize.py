"""Command results as JSON: one shape for HTTP answers, SSE and WebSocket events."""

from __future__ import annotations

from typing import Any

from container.agent.protocol import Exit
from sandboxes.execs import ExecResult


def exit_out(exit: Exit) -> dict[str, Any]:
    """The ``exit`` event of a command."""
    return {
        "exit_code": exit.exit_code,
        "success": exit.exit_code == 0 and not exit.timed_out,
        "timed_out": exit.timed_out,
        "duration_ms": exit.duration_ms,
    }


def exec_result_out(result: ExecResult) -> dict[str, Any]:
    """The answer of a buffered exec (``truncated`` only when output was dropped)."""
    data: dict[str, Any] = {
        "stdout": result.stdout,
        "stderr": result.stderr,
        "exit_code": result.exit_code,
        "success": result.exit_code == 0 and not result.timed_out,
        "timed_out": result.timed_out,
        "duration_ms": result.duration_ms,
    }
    if result.truncated:
        data["truncated"] = True
    return data


def process_exit_out(info: dict[str, Any]) -> dict[str, Any]:
    """The ``exit`` event of a background process's log stream."""
    return {
        "exit_code": info["exit_code"],
        "success": info["exit_code"] == 0,
        "status": info["status"],
        "signal": info["signal"],
        "pid": info["pid"],
    }
