"""The setup stages' progress, read from what pip and docker build really print."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import pytest

from ide.stages import BuildWatcher, Display, PipWatcher, Runner, StageFailed, serve


def test_docker_build_steps_become_step_n_of_m() -> None:
    watcher = BuildWatcher()
    for line in [
        "DEPRECATED: The legacy builder is deprecated and will be removed in a future release.",
        "Sending build context to Docker daemon  180.2kB",
        "Step 4/16 : RUN apt-get update  && apt-get install -y --no-install-recommends   tini",
        "Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]",
    ]:
        watcher.feed(line)
    assert (
        watcher.status
        == "step 4 of 16: Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]"
    )
    watcher.feed(" ---> Running in 5d2c1e0a9b3f")
    watcher.feed("Setting up python3-numpy (1:1.24.2-4) ...")
    assert watcher.status == "step 4 of 16: Setting up python3-numpy (1:1.24.2-4) ..."
    watcher.feed("Step 5/16 : RUN sed -i 's/x/y/'   /etc/profile")
    assert watcher.status == "step 5 of 16: RUN sed -i 's/x/y/' /etc/profile"
    watcher.feed("#9 [5/9] RUN sed -i 's/x/y/' /etc/profile")  # BuildKit's plain output
    assert watcher.status.startswith("step 5 of 9: RUN sed")


def test_pip_counts_packages_collected_then_installed() -> None:
    watcher = PipWatcher(total=3)
    watcher.feed("Collecting asgiref==3.8.1 (from -r requirements.lock (line 9))")
    watcher.feed("  Using cached asgiref-3.8.1-py3-none-any.whl.metadata (9.3 kB)")
    watcher.feed("Collecting django==5.1.4 (from -r requirements.lock (line 30))")
    assert watcher.status == "collecting 2 of 3 packages"
    watcher.feed("Installing collected packages: asgiref, django, sqlparse")
    assert watcher.status == "installing 3 packages"
    watcher.feed("Successfully installed asgiref-3.8.1 django-5.1.4 sqlparse-0.5.3")
    assert watcher.installed == 3


def test_a_terminal_gets_one_line_updated_in_place() -> None:
    out = io.StringIO()
    display = Display(out, tty=True)
    display.progress("sandbox image", "step 1 of 16: ARG BASE" + " and more" * 20, 1.0)
    display.progress("sandbox image", "step 2 of 16: FROM", 2.0)
    display.line("[ok]   sandbox image  built")
    text = out.getvalue()
    assert text.count("\r\033[K") == 3 and text.count("\n") == 1
    assert "step 1 of 16: ARG BASE and more and mor... " in text  # cut to its column
    assert text.endswith("\r\033[K[ok]   sandbox image  built\n")


def test_without_a_terminal_progress_is_a_plain_line_a_minute() -> None:
    out = io.StringIO()
    display = Display(out, tty=False)
    display.start()
    for second in range(50):
        display.progress("sandbox image", f"step {second} of 100", float(second))
    assert out.getvalue() == ""  # nothing yet: the first line waits a minute
    display._last_print -= 60  # as if a minute had passed
    display.progress("sandbox image", "step 7 of 9: RUN make", 61.0)
    display.progress("sandbox image", "step 8 of 9: RUN make", 62.0)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and "step 7 of 9" in lines[0] and "\033" not in lines[0]


def test_a_busy_port_fails_the_serving_stage_with_what_to_do(tmp_path: Path) -> None:
    out = io.StringIO()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StageFailed):
            serve(Runner(Display(out, tty=False), tmp_path), "127.0.0.1", port)
    first, advice = out.getvalue().splitlines()
    assert first.startswith("[FAIL] serving")
    assert advice == (
        f"What to do: 127.0.0.1:{port} cannot be served (Address already in use): stop what "
        f"uses the port or pick another one, e.g. `make run PORT={port + 1}`."
    )
