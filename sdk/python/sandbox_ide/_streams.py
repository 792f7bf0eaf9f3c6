"""Folds of a streaming call's Server-Sent Events into the value it returns, shared
by both clients. ``feed`` calls the user's callback itself and hands back what it
returned; the async client awaits that when it is awaitable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import AgentError
from .models import CommandResult, Execution, ProcessLogs, Result, error_from_json

Output = Callable[[str], Any] | None


def text(data: Any) -> str:
    """The text of an output event (``{"data": ...}``, ``{"text": ...}`` or a bare value)."""
    if isinstance(data, dict):
        return str(data.get("data", data.get("text", "")))
    return "" if data is None else str(data)


def _call(callback: Callable[[Any], Any] | None, value: Any) -> Any:
    return None if callback is None else callback(value)


class CommandEvents:
    """An exec's ``stdout``/``stderr``/``exit`` events into a CommandResult."""

    def __init__(self, on_stdout: Output, on_stderr: Output) -> None:
        self.on_stdout, self.on_stderr = on_stdout, on_stderr
        self.out: list[str] = []
        self.err: list[str] = []
        self.end: dict[str, Any] | None = None

    def feed(self, event: str, data: Any) -> Any:
        if event == "stdout":
            self.out.append(text(data))
            return _call(self.on_stdout, text(data))
        if event == "stderr":
            self.err.append(text(data))
            return _call(self.on_stderr, text(data))
        if event == "exit":
            self.end = data
        return None

    def result(self) -> CommandResult:
        if self.end is None:
            raise AgentError("The command's stream ended before its exit status arrived.")
        return CommandResult.from_json(self.end, "".join(self.out), "".join(self.err))


class CodeEvents:
    """A code run's events into an Execution."""

    def __init__(
        self, on_stdout: Output, on_stderr: Output, on_result: Callable[[Result], Any] | None
    ) -> None:
        self.on_stdout, self.on_stderr, self.on_result = on_stdout, on_stderr, on_result
        self.execution = Execution()

    def feed(self, event: str, data: Any) -> Any:
        execution = self.execution
        if event == "stdout":
            execution.stdout += text(data)
            return _call(self.on_stdout, text(data))
        if event == "stderr":
            execution.stderr += text(data)
            return _call(self.on_stderr, text(data))
        if event == "result":
            result = Result.from_json(data)
            execution.results.append(result)
            return _call(self.on_result, result)
        if event == "error":
            execution.error = error_from_json(data)
        elif event == "end" and isinstance(data, dict) and data.get("error"):
            execution.error = execution.error or error_from_json(data["error"])
        return None


class LogEvents:
    """A followed process's log events into ProcessLogs."""

    def __init__(self, on_stdout: Output, on_stderr: Output) -> None:
        self.on_stdout, self.on_stderr = on_stdout, on_stderr
        self.logs = ProcessLogs(stdout="", stderr="")

    def feed(self, event: str, data: Any) -> Any:
        if event == "stdout":
            self.logs.stdout += text(data)
            return _call(self.on_stdout, text(data))
        if event == "stderr":
            self.logs.stderr += text(data)
            return _call(self.on_stderr, text(data))
        if event == "exit" and isinstance(data, dict):
            self.logs.exit_code = data.get("exit_code")
        return None
