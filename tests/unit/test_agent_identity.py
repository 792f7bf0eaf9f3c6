"""How the agent turns a Popen call into one through sandbox-as-user."""

from __future__ import annotations

from pathlib import Path

import pytest

from container.agent.identity import AS_USER, resolve_program, through_as_user


def test_a_program_on_the_path_is_found_and_keeps_its_argv0(tmp_path: Path) -> None:
    program = tmp_path / "tool"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    kwargs: dict[str, object] = {"env": {"PATH": f"/nonexistent:{tmp_path}"}, "cwd": "/"}
    argv = through_as_user(1000, ["tool", "--flag"], kwargs)
    assert argv == [AS_USER, "1000", str(program), "tool", "--flag"]
    assert "shell" not in kwargs and "executable" not in kwargs


def test_shell_and_executable_are_applied_as_popen_would(tmp_path: Path) -> None:
    kwargs: dict[str, object] = {"shell": True}
    assert through_as_user(1000, "echo hi", kwargs) == [
        AS_USER, "1000", "/bin/sh", "/bin/sh", "-c", "echo hi",
    ]  # fmt: skip
    kwargs = {"executable": "/bin/echo"}
    assert through_as_user(1000, ["shown-name", "x"], kwargs)[2:] == [
        "/bin/echo", "shown-name", "x",
    ]  # fmt: skip


def test_relative_paths_are_found_from_the_working_directory(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert resolve_program("./run.sh", None, str(tmp_path)) == "./run.sh"


def test_missing_and_unrunnable_programs_raise_what_cpython_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as missing:
        resolve_program("no-such-program-anywhere", {"PATH": str(tmp_path)}, None)
    assert missing.value.filename == "no-such-program-anywhere"
    data = tmp_path / "data.txt"
    data.write_text("not a program")
    data.chmod(0o644)
    with pytest.raises(PermissionError):
        resolve_program(str(data), None, None)
    with pytest.raises(PermissionError):
        resolve_program(str(tmp_path), None, None)  # a directory
