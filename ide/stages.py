"""``python3 -m ide.stages run|setup|venv``: what ``make run`` prints while it sets up.

Setting up is a few named stages (virtualenv, dependencies, database, engine check,
base image, sandbox image); each prints one line with its elapsed time, and the long
ones a progress line while they work (updated in place on a terminal, a sparse line
now and then otherwise). Everything the tools print goes to ``var/logs/STAGE.log``. A
failing stage prints the end of its log and what to do. ``run`` then serves, after a
closing note with the URL to open and how to make the first account.

Standard library only and run by the system ``python3``: it creates the virtualenv.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from sandboxes.engine_faults import classify

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
INSTALLED = VENV / ".installed"
LOCKED = (ROOT / "requirements.lock", ROOT / "pyproject.toml", ROOT / "sdk/python/pyproject.toml")
TAIL = 30  # log lines shown when a stage fails
SPARSE = 60.0  # seconds between progress lines without a terminal


class StageFailed(Exception):
    pass


# ---------------------------------------------------------------------- progress


class Watcher:
    """Reads a stage's output as it comes; ``status`` is its progress line."""

    def __init__(self, doing: str = "") -> None:
        self.status = doing

    def feed(self, line: str) -> None:
        text = line.strip()
        if text:
            self.status = text


class PipWatcher(Watcher):
    def __init__(self, total: int) -> None:
        super().__init__("starting pip")
        self.total = total
        self.seen = 0
        self.installed = 0

    def feed(self, line: str) -> None:
        if line.startswith(("Collecting ", "Requirement already satisfied", "Processing ")):
            self.seen += 1
            self.status = f"collecting {min(self.seen, self.total)} of {self.total} packages"
        elif line.startswith("Installing collected packages:"):
            count = len(line.partition(":")[2].split(","))
            self.status = f"installing {count} packages"
        elif line.startswith("Successfully installed"):
            self.installed += len(line.split()) - 2


class BuildWatcher(Watcher):
    """``docker build`` steps: ``Step 3/12 : RUN …`` (classic) or ``#7 [3/12] RUN …``,
    then the step's latest output line (apt's ``Get:``, ``Unpacking``, ``Setting up``)."""

    STEP = re.compile(r"^(?:Step (\d+)/(\d+) :|#\d+ \[[^\]]*?(\d+)/(\d+)\]) *(.*)")
    NOISE = re.compile(r"^( ---> |Removing intermediate|Successfully |#\d+ (DONE|CACHED))")

    def __init__(self) -> None:
        super().__init__("checking the sandbox image")
        self.step = ""

    def feed(self, line: str) -> None:
        match = self.STEP.match(line)
        if match:
            self.step = f"step {match[1] or match[3]} of {match[2] or match[4]}"
            self.status = f"{self.step}: {' '.join(match[5].split())}"
        elif self.step and line.strip() and not self.NOISE.match(line):
            self.status = f"{self.step}: {' '.join(line.split())}"


def clock(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def shown(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


@dataclass
class Display:
    out: TextIO
    tty: bool
    _last_print: float = 0.0
    _last_status: str = ""
    _live: bool = False

    def line(self, text: str) -> None:
        self._clear()
        self.out.write(text + "\n")
        self.out.flush()

    def stage(self, mark: str, name: str, text: str, elapsed: float, log: Path | None) -> str:
        where = f"  {shown(log)}" if log else ""
        return f"{'[' + mark + ']':<6} {name:<13} {text:<42} {clock(elapsed):>6}{where}"

    def progress(self, name: str, status: str, elapsed: float) -> None:
        text = self.stage("..", name, shorten(status, 42), elapsed, None)
        if self.tty:
            width = shutil.get_terminal_size().columns - 1
            if text[:width] == self._last_status:
                return
            self._last_status = text[:width]
            self.out.write("\r\033[K" + self._last_status)
            self.out.flush()
            self._live = True
        elif time.monotonic() - self._last_print >= SPARSE:
            self.line(text)
            self._last_print = time.monotonic()

    def start(self) -> None:
        self._last_print = time.monotonic()
        self._last_status = ""

    def _clear(self) -> None:
        if self._live:
            self.out.write("\r\033[K")
            self._live = False


# ---------------------------------------------------------------------- stages


@dataclass
class Runner:
    display: Display
    logs: Path
    env: dict[str, str] = field(default_factory=dict)

    def done(self, name: str, text: str, started: float, log: Path | None = None) -> None:
        self.display.line(self.display.stage("ok", name, text, time.monotonic() - started, log))

    def run(
        self,
        name: str,
        commands: Sequence[Sequence[str]],
        *,
        watcher: Watcher | None = None,
        advice: str,
    ) -> tuple[list[str], Path, float]:
        """Run ``commands`` one after the other into the stage's log; its output lines."""
        watcher = watcher or Watcher("working")
        started = time.monotonic()
        log = self.logs / f"{name.replace(' ', '-')}.log"
        lines: list[str] = []
        self.display.start()
        with log.open("w", encoding="utf-8") as sink:
            for command in commands:
                self._note(sink, lines, "$ " + shlex.join(command).replace(f"{ROOT}/", ""))
                code = self._stream(name, command, sink, watcher, lines, started)
                if code != 0:
                    self._note(sink, lines, f"(exit status {code})")
                    self.fail(name, started, log, lines, advice)
        return lines, log, started

    @staticmethod
    def _note(sink: TextIO, lines: list[str], text: str) -> None:
        sink.write(text + "\n")
        sink.flush()
        lines.append(text)

    def _stream(
        self,
        name: str,
        command: Sequence[str],
        sink: TextIO,
        watcher: Watcher,
        lines: list[str],
        started: float,
    ) -> int:
        try:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
        except OSError as exc:
            sink.write(f"{exc}\n")
            lines.append(str(exc))
            return 127
        assert process.stdout is not None  # noqa: S101 (set by stdout=PIPE)
        incoming: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert process.stdout is not None  # noqa: S101
            for text in process.stdout:
                incoming.put(text)
            incoming.put(None)

        threading.Thread(target=pump, daemon=True).start()
        try:
            while True:
                try:
                    text = incoming.get(timeout=0.5)
                except queue.Empty:
                    text = ""
                if text is None:
                    break
                if text:
                    sink.write(text)
                    lines.append(text.rstrip("\n"))
                    watcher.feed(text.rstrip("\n"))
                self.display.progress(name, watcher.status, time.monotonic() - started)
            sink.flush()
            return process.wait()
        finally:
            if process.poll() is None:
                process.terminate()
                process.wait()

    def fail(self, name: str, started: float, log: Path, lines: list[str], advice: str) -> None:
        tail = list(deque(lines, maxlen=TAIL))
        fault = classify("\n".join(tail))
        # A bad setting, or a database or Redis that is down (ide/preflight.py), is one
        # sentence beginning "Setting NAME": it says what to do better than the advice.
        setting = next((text for text in reversed(tail) if text.startswith("Setting ")), None)
        show = self.display.line
        show(self.display.stage("FAIL", name, "", time.monotonic() - started, None).rstrip())
        show(f"--- the last {len(tail)} lines of {shown(log)} ---")
        for text in tail:
            show("  " + text)
        show("---")
        show(f"What to do: {setting or (fault.message if fault else advice)}")
        raise StageFailed(name)


def last_line(lines: list[str], default: str) -> str:
    for text in reversed(lines):
        if text.strip() and not text.startswith(("$ ", "(exit status")):
            return " ".join(text.split())
    return default


def virtualenv(runner: Runner) -> None:
    started = time.monotonic()
    if (VENV / "bin" / "pip").exists():
        runner.done("virtualenv", f"{VENV.name} is there", started)
        return
    _, log, started = runner.run(
        "virtualenv",
        [[sys.executable, "-m", "venv", str(VENV)]],
        watcher=Watcher(f"python3 -m venv {VENV.name}"),
        advice="`python3 -m venv` failed: on Debian or Ubuntu install its module "
        "(`sudo apt-get install python3-venv`), remove .venv and try again.",
    )
    runner.done("virtualenv", f"{VENV.name} created", started, log)


def dependencies(runner: Runner) -> None:
    started = time.monotonic()
    if INSTALLED.exists() and all(
        INSTALLED.stat().st_mtime >= path.stat().st_mtime for path in LOCKED
    ):
        runner.done("dependencies", "up to date with requirements.lock", started)
        return
    total = sum(
        1 for text in LOCKED[0].read_text().splitlines() if re.match(r"^[A-Za-z0-9].*==", text)
    )
    watcher = PipWatcher(total)
    pip = [str(PYTHON), "-m", "pip", "--disable-pip-version-check"]
    _, log, started = runner.run(
        "dependencies",
        [
            [*pip, "install", "-r", "requirements.lock"],
            [*pip, "install", "--no-deps", "-e", ".", "-e", "./sdk/python"],
        ],
        watcher=watcher,
        advice="pip could not install the locked dependencies: check that this machine "
        "reaches PyPI (or the index in PIP_INDEX_URL), then try again; `make clean` "
        "starts over with a new .venv.",
    )
    INSTALLED.touch()
    runner.done("dependencies", f"{watcher.installed} packages installed", started, log)


def manage(*args: str) -> list[str]:
    return [str(PYTHON), "manage.py", *args]


def database(runner: Runner) -> None:
    lines, log, started = runner.run(
        "database",
        [manage("migrate", "--noinput")],
        watcher=Watcher("manage.py migrate"),
        advice="the database migrations failed: check DATABASE_URL (see "
        "docs/configuration.md), or move var/db.sqlite3 aside to start with an empty one.",
    )
    applied = sum(1 for text in lines if text.lstrip().startswith("Applying "))
    text = f"{applied} migrations applied" if applied else "up to date"
    runner.done("database", text, started, log)


def engine_check(runner: Runner) -> None:
    lines, log, started = runner.run(
        "engine check",
        [manage("check_engine")],
        watcher=Watcher("asking the Docker engine"),
        advice="the Docker engine does not answer: start it (`sudo systemctl start docker`) "
        "and check that `docker info` works.",
    )
    runner.done("engine check", last_line(lines, "Docker answers"), started, log)


BUILD_ADVICE = (
    "the image build failed: the log's last lines above say why; fix that and run "
    "`make run` again (the build resumes from its cache)."
)


def base_image(runner: Runner) -> None:
    lines, log, started = runner.run(
        "base image",
        [manage("build_sandbox_image", "--base")],
        watcher=Watcher("checking the base image"),
        advice=BUILD_ADVICE,
    )
    runner.done("base image", last_line(lines, "ready"), started, log)


def sandbox_image(runner: Runner) -> None:
    lines, log, started = runner.run(
        "sandbox image",
        [manage("build_sandbox_image")],
        watcher=BuildWatcher(),
        advice=BUILD_ADVICE,
    )
    runner.done("sandbox image", last_line(lines, "ready"), started, log)


def serve(runner: Runner, host: str, port: int) -> None:
    """Check the port, print the closing note and become the server."""
    started = time.monotonic()
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            runner.display.line(runner.display.stage("FAIL", "serving", "", 0.0, None).rstrip())
            runner.display.line(
                f"What to do: {host}:{port} cannot be served ({exc.strerror}): stop what "
                f"uses the port or pick another one, e.g. `make run PORT={port + 1}`."
            )
            raise StageFailed("serving") from None
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
    url = f"http://{shown_host}:{port}/"
    runner.done("serving", f"on {host}:{port}; Ctrl-C stops it", started)
    runner.display.line(
        f"First account: sign up at {url}accounts/signup/, or make an API token with\n"
        f"  {shown(PYTHON)} manage.py create_api_token NAME --create-user"
    )
    runner.display.line(f"Open {url}")
    command = [str(PYTHON), "-m", "ide.server", "-b", host, "-p", str(port)]
    os.chdir(ROOT)
    os.execv(PYTHON, [*command, "ide.asgi:application"])  # noqa: S606


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m ide.stages", description=__doc__)
    parser.add_argument("goal", choices=["venv", "setup", "run"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--logs", type=Path, default=ROOT / "var" / "logs")
    args = parser.parse_args(argv)
    args.logs.mkdir(parents=True, exist_ok=True)
    runner = Runner(Display(sys.stdout, sys.stdout.isatty()), args.logs.resolve())
    stages = [virtualenv, dependencies]
    if args.goal != "venv":
        stages += [database, engine_check, base_image, sandbox_image]
        runner.display.line(f"Setting up Sandbox IDE (full logs in {shown(runner.logs)}/)")
    try:
        for stage in stages:
            stage(runner)
        if args.goal == "run":
            serve(runner, args.host, args.port)
    except StageFailed:
        return 1
    except KeyboardInterrupt:
        runner.display.line("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
