# GENERATED from sandbox_ide/_async/processes.py by sdk/python/unasync.py: edit that file, then run
# `python sdk/python/unasync.py`.
"""Background processes: start, list, follow their logs, kill, and wait for them."""

from __future__ import annotations

import builtins
import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any

from .. import _api
from .. import _sync_io as _io
from .._deadline import Deadline
from .._streams import LogEvents
from .._wire import read_timeout
from ..errors import CommandTimeout
from ..models import ProcessInfo, ProcessLogs
from .resource import Part


class Process(ProcessInfo):
    """A process as ``start`` answers it: its info, and a way to write to its stdin
    (when started with ``stdin=True``)."""

    _processes: Processes

    @classmethod
    def bound(cls, data: dict[str, Any], processes: Processes) -> Process:
        info = ProcessInfo.from_json(data)
        process = cls(**{f.name: getattr(info, f.name) for f in dataclasses.fields(info)})
        process._processes = processes
        return process

    def send_stdin(self, data: str | bytes) -> None:
        """Append ``data`` to its stdin (text is sent as UTF-8)."""
        self._processes.send_stdin(self.pid, data)

    def close_stdin(self) -> None:
        """End its input: it reads end-of-file after what was sent."""
        self._processes.close_stdin(self.pid)


class Processes(Part):
    """Background processes: they outlive the request that started them."""

    _prefix = "processes"

    def start(
        self,
        command: str | Sequence[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: bool = False,
    ) -> Process:
        """Start it; with ``stdin=True`` its input is written with ``send_stdin``."""
        body = _api.drop_none(command=_api.command(command), cwd=cwd, env=env, stdin=stdin or None)
        return Process.bound(self._http.json("POST", self._url(), json=body), self)

    def send_stdin(self, pid: int, data: str | bytes) -> None:
        """Append ``data`` to the stdin of a process started with ``stdin=True``.

        ConflictError when it has none (or it is closed, or the process ended);
        RateLimitError (``stdin_full``) while it leaves too much of its input unread.
        """
        content = data.encode() if isinstance(data, str) else bytes(data)
        self._http.request("POST", self._url(int(pid), "stdin"), content=content)

    def close_stdin(self, pid: int) -> None:
        self._http.request("POST", self._url(int(pid), "stdin", "close"))

    def list(self) -> builtins.list[ProcessInfo]:
        data = self._http.json("GET", self._url())
        return [ProcessInfo.from_json(p) for p in data["processes"]]

    def get(self, pid: int) -> ProcessInfo:
        return ProcessInfo.from_json(self._http.json("GET", self._url(int(pid))))

    def logs(
        self,
        pid: int,
        *,
        follow: bool = False,
        on_stdout: Callable[[str], Any] | None = None,
        on_stderr: Callable[[str], Any] | None = None,
    ) -> ProcessLogs:
        """Its output so far; ``follow=True`` streams (to the callbacks) until it exits."""
        url = self._url(int(pid), "logs")
        if not follow:
            data = self._http.json("GET", url)
            return ProcessLogs(stdout=data.get("stdout", ""), stderr=data.get("stderr", ""))
        events = LogEvents(on_stdout, on_stderr)
        for event, data in self._http.events("GET", url, params={"follow": 1}):
            _io.maybe_await(events.feed(event, data))
        return events.logs

    def kill(self, pid: int, signal: str = "TERM") -> None:
        self._http.request("DELETE", self._url(int(pid)), params={"signal": signal})

    def wait(self, pid: int, *, timeout: float = 60, interval: float = 0.2) -> ProcessInfo:
        """Wait until the process exits; CommandTimeout after ``timeout`` seconds."""
        deadline = Deadline(timeout)
        while True:
            info = self.get(pid)
            if not info.running:
                return info
            if deadline.expired():
                raise CommandTimeout(f"Process {pid} still runs after {timeout} s.")
            _io.sleep(interval)

    def wait_for_port(
        self,
        port: int,
        *,
        pid: int | None = None,
        timeout: float = 60,
        interval: float = 0.2,
    ) -> None:
        """Wait until something in the sandbox listens on TCP ``port``.

        With the ``pid`` of the server process the wait runs in the sandbox and fails
        at once if that process exits first.
        """
        if pid is not None:
            self._http.json(
                "POST",
                self._url(int(pid), "wait-for-port"),
                json={"port": int(port), "timeout": timeout},
                timeout=read_timeout(timeout + 30),
            )
            return
        deadline = Deadline(timeout)
        while True:
            ports = self._sb.ports.list()
            if int(port) in ports.listening:
                return
            if deadline.expired():
                raise CommandTimeout(
                    f"Nothing listens on port {port} after {timeout} s: check the "
                    "server's logs (processes.logs(pid)) and that it binds 0.0.0.0 or "
                    "127.0.0.1."
                )
            _io.sleep(interval)

    def wait_for_log(self, pid: int, pattern: str | re.Pattern[str], *, timeout: float = 60) -> str:
        """Wait until the process prints a line (stdout or stderr, so far or to come)
        matching the regular expression ``pattern``; returns that line.

        CommandTimeout after ``timeout`` s; ConflictError (code ``process_exited``)
        if the process ends first.
        """
        regex = pattern.pattern if isinstance(pattern, re.Pattern) else pattern
        data = self._http.json(
            "POST",
            self._url(int(pid), "wait-for-log"),
            json={"pattern": regex, "timeout": timeout},
            timeout=read_timeout(timeout + 30),
        )
        return str(data.get("line", data.get("match", "")))
