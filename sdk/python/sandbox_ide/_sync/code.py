# GENERATED from sandbox_ide/_async/code.py by sdk/python/unasync.py: edit that file, then run
# `python sdk/python/unasync.py`.
"""The code interpreter: ``sandbox.run_code`` and its persistent contexts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _api
from .. import _sync_io as _io
from .._streams import CodeEvents
from .._wire import NO_READ_TIMEOUT
from ..models import CodeContext, Execution, Result
from .http import HTTP


class Code:
    """``run_code`` and code contexts, mixed into the sandbox."""

    _http: HTTP
    _path: str

    def run_code(
        self,
        code: str,
        *,
        language: str | None = None,
        context: CodeContext | str | None = None,
        timeout: float | None = None,
        on_stdout: Callable[[str], Any] | None = None,
        on_stderr: Callable[[str], Any] | None = None,
        on_result: Callable[[Result], Any] | None = None,
    ) -> Execution:
        """Run code in an interpreter (``context`` keeps state between runs).

        Errors in the code come back in ``execution.error``; they are not raised.
        """
        ctx = _api.ref(context) if context is not None else None
        body = _api.drop_none(code=code, language=language, context=ctx, timeout=timeout)
        path = self._path + "/code/run"
        if on_stdout is None and on_stderr is None and on_result is None:
            data = self._http.json("POST", path, json=body, timeout=NO_READ_TIMEOUT)
            return Execution.from_json(data)
        events = CodeEvents(on_stdout, on_stderr, on_result)
        for event, data in self._http.events("POST", path, json=body):
            _io.maybe_await(events.feed(event, data))
        return events.execution

    def create_code_context(
        self, language: str = "python", *, cwd: str | None = None
    ) -> CodeContext:
        """A new persistent interpreter (``python`` or ``javascript``)."""
        data = self._http.json(
            "POST",
            self._path + "/code/contexts",
            json=_api.drop_none(language=language, cwd=cwd),
            timeout=NO_READ_TIMEOUT,
        )
        return CodeContext.from_json(data)

    def list_code_contexts(self) -> list[CodeContext]:
        data = self._http.json("GET", self._path + "/code/contexts")
        return [CodeContext.from_json(c) for c in data["contexts"]]

    def remove_code_context(self, context: CodeContext | str) -> None:
        path = self._path + _api.path("code", "contexts", _api.ref(context))
        self._http.request("DELETE", path)
