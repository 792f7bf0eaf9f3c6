"""Programs started through a ready launcher behave as CPython's own Popen would."""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from container.agent import launcher
from container.agent.launcher import POOL, Launcher, LaunchingPopen


def test_cpython_still_calls_execute_child_as_we_override_it() -> None:
    """Fails loudly if CPython changes the private method the launcher replaces."""
    theirs = list(inspect.signature(subprocess.Popen._execute_child).parameters)  # type: ignore[attr-defined]
    ours = list(inspect.signature(LaunchingPopen._execute_child).parameters)
    assert theirs == ours


@pytest.fixture
def pool() -> Iterator[None]:
    """A pool for this process's own uid (the tests run as the user they spawn as)."""
    POOL.uid = os.getuid()
    try:
        yield
    finally:
        POOL.uid = None
        while POOL.ready:
            POOL.ready.pop().discard()


def ready() -> None:
    POOL.ready.append(Launcher())


def popen(*args: object, **kwargs: object) -> LaunchingPopen:
    return LaunchingPopen(*args, user=os.getuid(), **kwargs)  # type: ignore[arg-type]


def test_a_program_runs_through_a_launcher(pool: None, tmp_path: Path) -> None:
    ready()
    forked = POOL.ready[0].pid
    proc = popen(
        ["sh", "-c", 'read x; echo "$x $GREETING $(pwd)"; echo err >&2; exit 3'],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env={"GREETING": "hi", "PATH": os.environ["PATH"]},
        start_new_session=True,
    )
    assert proc.pid == forked  # the launcher became the program
    out, err = proc.communicate(b"hello\n", timeout=10)
    assert (out, err, proc.returncode) == (f"hello hi {tmp_path}\n".encode(), b"err\n", 3)
    assert not POOL.ready


def test_new_session_and_descriptors(pool: None) -> None:
    ready()
    read, write = os.pipe()
    proc = popen(
        ["sh", "-c", "echo $$ $(ps -o pgid= -p $$) $(ls /proc/self/fd | wc -l)"],
        stdout=write,
        start_new_session=True,
    )
    os.close(write)
    proc.wait(10)
    pid, pgid, fds = os.read(read, 200).split()
    os.close(read)
    assert int(pid) == int(pgid) == proc.pid  # leads its own process group
    assert int(fds) <= 5  # 0-2, ls's directory and one more: nothing of the agent's


def test_failures_raise_what_cpython_raises(pool: None, tmp_path: Path) -> None:
    ready()
    with pytest.raises(FileNotFoundError) as missing:
        popen(["no-such-program-anywhere"])
    assert missing.value.filename == "no-such-program-anywhere"
    ready()
    with pytest.raises(FileNotFoundError) as no_dir:
        popen(["true"], cwd=tmp_path / "gone")
    assert no_dir.value.filename == tmp_path / "gone"
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    ready()
    with pytest.raises(PermissionError):
        popen([str(script)])


def test_without_a_ready_launcher_cpython_starts_it(pool: None) -> None:
    proc = popen(["sh", "-c", "exit 7"])
    assert proc.wait(10) == 7


async def test_asyncio_programs_and_the_pool_refilling(
    pool: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subprocess, "Popen", LaunchingPopen)
    monkeypatch.setattr(launcher, "POOL_SIZE", 1)
    POOL.fill_soon()
    await asyncio.sleep(0.1)
    assert len(POOL.ready) == 1
    forked = POOL.ready[0].pid
    proc = await asyncio.create_subprocess_exec(
        "echo", "through", stdout=asyncio.subprocess.PIPE, user=os.getuid()
    )
    assert proc.pid == forked
    assert await proc.stdout.read() == b"through\n"  # type: ignore[union-attr]
    assert await proc.wait() == 0
    await asyncio.sleep(0.1)
    assert len(POOL.ready) == 1 and POOL.ready[0].pid != forked  # made a moment later
