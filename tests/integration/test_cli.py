"""The `sandbox-ide` command line (sdk/python) against the live test server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
from sandbox_ide import Sandbox

from tests.server import LiveServer

CLI = str(Path(sys.executable).parent / "sandbox-ide")


@pytest.fixture(scope="module")
def cli_env(server: LiveServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_IDE")}
    env.update(SANDBOX_IDE_URL=server.url, SANDBOX_IDE_TOKEN=server.token("cli-user"))
    return env


@pytest.fixture(scope="module")
def box(cli_env: dict[str, str]) -> Iterator[Sandbox]:
    """The CLI's sandbox, made by `sandbox-ide create`."""
    out = run(cli_env, "create", "clibox", "--keep-alive", "--env", "WHO=cli")
    assert out.returncode == 0, out.stderr
    name, sandbox_id, status, state = out.stdout.strip().split("\t")
    assert (name, status, state) == ("clibox", "running", "created")
    with Sandbox.connect(
        sandbox_id, url=cli_env["SANDBOX_IDE_URL"], token=cli_env["SANDBOX_IDE_TOKEN"]
    ) as sandbox:
        yield sandbox


def run(env: dict[str, str], *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], env=env, capture_output=True, text=True, timeout=120, **kwargs
    )  # type: ignore[call-overload]


def test_create_is_get_or_create_and_ls(cli_env: dict[str, str], box: Sandbox) -> None:
    again = run(cli_env, "create", "clibox")
    assert again.returncode == 0 and again.stdout.strip().endswith("exists")
    assert box.info.env == {"WHO": "cli"}
    listing = run(cli_env, "ls")
    assert listing.returncode == 0
    header, *rows = listing.stdout.splitlines()
    assert header.split() == ["NAME", "ID", "STATUS", "CREATED"]
    assert any(row.split()[:3] == ["clibox", box.id, "running"] for row in rows)


def test_exec_exit_codes_and_streams(cli_env: dict[str, str], box: Sandbox) -> None:
    out = run(cli_env, "exec", "clibox", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert out.returncode == 3
    assert out.stdout == "out\n" and out.stderr == "err\n"
    ok = run(cli_env, "exec", "clibox", "--", "echo $WHO | tr a-z A-Z")  # one arg: a shell line
    assert ok.returncode == 0 and ok.stdout == "CLI\n"
    argv = run(cli_env, "exec", "clibox", "--cwd", "/tmp", "--", "pwd")
    assert argv.stdout == "/tmp\n"
    timed = run(cli_env, "exec", "clibox", "--timeout", "0.5", "--", "sleep 30")
    assert timed.returncode == 124 and "timed out" in timed.stderr
    missing = run(cli_env, "exec", "nosuchbox", "--", "true")
    assert missing.returncode == 1 and "sandbox-ide create nosuchbox" in missing.stderr


def test_exec_output_is_live(cli_env: dict[str, str], box: Sandbox) -> None:
    proc = subprocess.Popen(
        [CLI, "exec", "clibox", "--", "echo first; sleep 3; echo second"],
        env=cli_env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "first\n"
    first = time.monotonic()
    assert proc.stdout.readline() == "second\n"
    assert time.monotonic() - first > 2  # the first line came while the command ran
    assert proc.wait(30) == 0


def test_cp_files_both_ways(cli_env: dict[str, str], box: Sandbox, tmp_path: Path) -> None:
    local = tmp_path / "data.bin"
    local.write_bytes(os.urandom(2 * 1024 * 1024))
    up = run(cli_env, "cp", "--progress", str(local), "clibox:/workspace/cp/data.bin")
    assert up.returncode == 0, up.stderr
    assert "100%" in up.stderr and "data.bin" in up.stderr  # the progress line
    assert box.files.read("cp/data.bin") == local.read_bytes()
    # into an existing directory keeps the name, like cp
    box.files.mkdir("cp/into")
    assert run(cli_env, "cp", str(local), "clibox:cp/into").returncode == 0
    assert box.files.exists("cp/into/data.bin")

    back = tmp_path / "back.bin"
    down = run(cli_env, "cp", "clibox:cp/data.bin", str(back))
    assert down.returncode == 0 and back.read_bytes() == local.read_bytes()
    assert down.stderr == ""  # no progress line when stderr is not a terminal
    into = tmp_path / "dir"
    into.mkdir()
    assert run(cli_env, "cp", "clibox:cp/data.bin", str(into)).returncode == 0
    assert (into / "data.bin").read_bytes() == local.read_bytes()

    missing = run(cli_env, "cp", "clibox:cp/nope.txt", str(tmp_path / "x"))
    assert missing.returncode == 1 and "nope.txt" in missing.stderr
    both = run(cli_env, "cp", str(local), str(tmp_path / "y"))
    assert both.returncode == 1 and "exactly one side" in both.stderr


def test_cp_folders_both_ways(cli_env: dict[str, str], box: Sandbox, tmp_path: Path) -> None:
    tree = tmp_path / "proj"
    (tree / "src").mkdir(parents=True)
    (tree / "src" / "app.py").write_text("print(1)\n")
    (tree / "notes.txt").write_text("notes\n")
    assert run(cli_env, "cp", str(tree), "clibox:/workspace/copied").returncode == 0
    assert box.files.read_text("copied/src/app.py") == "print(1)\n"
    assert box.files.read_text("copied/notes.txt") == "notes\n"
    # an existing destination directory receives the folder by name
    assert run(cli_env, "cp", str(tree), "clibox:/workspace/copied").returncode == 0
    assert box.files.read_text("copied/proj/notes.txt") == "notes\n"

    out = tmp_path / "out"
    down = run(cli_env, "cp", "clibox:/workspace/copied", str(out))
    assert down.returncode == 0, down.stderr
    assert (out / "copied" / "src" / "app.py").read_text() == "print(1)\n"
    assert (out / "copied" / "proj" / "notes.txt").read_text() == "notes\n"


def test_shell_in_a_pseudo_terminal(cli_env: dict[str, str], box: Sandbox) -> None:
    # `stty -a` after the shell shows the local terminal was restored (icanon, echo)
    child = pexpect.spawn(
        "/bin/sh",
        ["-c", f"{CLI} shell clibox; echo CODE=$?; stty -a"],
        env=cli_env,
        dimensions=(24, 80),
        timeout=30,
    )
    try:
        child.sendline("echo $((6*7))")  # typed ahead, before the shell is up
        child.expect(r"\b42\b")
        child.sendline("stty size")
        child.expect("24 80")
        child.setwinsize(33, 101)  # SIGWINCH → resize of the sandbox PTY
        time.sleep(0.5)
        child.sendline("stty size")
        child.expect("33 101")
        child.send("printf 'raw:%s\\n' ab\x7fc\r")  # backspace handled remotely
        child.expect("raw:ac")
        child.sendline("exit 3")
        child.expect("CODE=3")
        child.expect(pexpect.EOF)
        after = child.before.decode()
        assert " icanon" in after and " echo" in after
        assert "-icanon" not in after
    finally:
        child.close(force=True)


def test_expose_and_rm(cli_env: dict[str, str], tmp_path: Path) -> None:
    assert run(cli_env, "create", "cli-tmp").returncode == 0
    exposed = run(cli_env, "expose", "cli-tmp", "8080")
    assert exposed.returncode == 0, exposed.stderr
    url = exposed.stdout.strip()
    assert url.startswith("http://8080-") and ".preview." in url
    shared = run(cli_env, "share", "cli-tmp", "8080", "authenticated", "--expires", "600")
    assert shared.returncode == 0, shared.stderr
    assert "/p/" in shared.stdout and "Anyone with an account" in shared.stderr
    assert "Until " in shared.stderr
    wrong = run(cli_env, "share", "cli-tmp", "8080", "friends")
    assert wrong.returncode != 0 and "invalid choice" in wrong.stderr
    bad = run(cli_env, "expose", "cli-tmp", "70000")
    assert bad.returncode == 1 and "sandbox-ide:" in bad.stderr
    removed = run(cli_env, "rm", "cli-tmp")
    assert removed.returncode == 0 and removed.stdout.strip() == "cli-tmp"
    assert "cli-tmp" not in run(cli_env, "ls").stdout
    again = run(cli_env, "rm", "cli-tmp")
    assert again.returncode == 1 and "no sandbox named 'cli-tmp'" in again.stderr


def test_errors_without_configuration(cli_env: dict[str, str]) -> None:
    env = {k: v for k, v in cli_env.items() if k != "SANDBOX_IDE_TOKEN"}
    out = run(env, "ls")
    assert out.returncode == 1 and "SANDBOX_IDE_TOKEN" in out.stderr
    bad = run({**cli_env, "SANDBOX_IDE_TOKEN": "wrong"}, "ls")
    assert bad.returncode == 1 and "token" in bad.stderr.lower()
    usage = run(cli_env, "exec", "clibox")
    assert usage.returncode == 1 and "exec NAME -- CMD" in usage.stderr


def test_classroom_commands(server: LiveServer, cli_env: dict[str, str], tmp_path: Path) -> None:
    teacher = {**cli_env, "SANDBOX_IDE_TOKEN": server.token("cli-teacher")}
    student = {**cli_env, "SANDBOX_IDE_TOKEN": server.token("cli-student")}
    starter = tmp_path / "starter"
    starter.mkdir()
    (starter / "main.py").write_text("print('starter')\n")

    made = run(
        teacher,
        "template",
        "create",
        "cli101",
        "--files",
        str(starter),
        "--open",
        "main.py",
        "--warm-pool",
        "0",
    )
    assert made.returncode == 0, made.stderr
    name, template_id, head = made.stdout.strip().split("\t")
    assert name == "cli101" and len(template_id) == 12 and len(head) == 10
    extra = tmp_path / "extra.txt"
    extra.write_text("more\n")
    uploaded = run(teacher, "template", "upload", "cli101", str(extra), "-m", "extra")
    assert uploaded.returncode == 0, uploaded.stderr
    assert uploaded.stdout.split("\t")[2].strip() != head
    header, *rows = run(teacher, "template", "list").stdout.splitlines()
    assert header.split() == ["NAME", "ID", "STARTER", "SOURCE", "UPDATED"]
    assert [row.split()[:2] for row in rows] == [["cli101", template_id]]

    course = run(teacher, "course", "create", "CLI 101", "--template", "cli101")
    assert course.returncode == 0, course.stderr
    course_name, course_id, _ = course.stdout.strip().split("\t")
    assert course_name == "CLI 101"
    invite = run(teacher, "course", "invite", "CLI 101", "--days", "3")
    assert invite.returncode == 0, invite.stderr
    url = invite.stdout.strip()
    assert url.startswith(f"{server.url}/join/")

    joined = run(student, "course", "join", url)
    assert joined.returncode == 0, joined.stderr
    box_name, box_id, status, state = joined.stdout.strip().split("\t")
    assert (status, state) == ("running", "joined")
    again = run(student, "course", "join", url.rstrip("/").rsplit("/", 1)[1])  # the bare token
    assert again.stdout.strip().split("\t")[1:] == [box_id, "running", "exists"]
    listed = run(student, "course", "list").stdout.splitlines()
    assert listed[1].split()[-3:] == ["student", "cli-teacher", "cli101"]
    out = run(student, "exec", box_name, "--", "cat main.py extra.txt")
    assert out.stdout == "print('starter')\nmore\n"
    run(student, "exec", box_name, "--", "echo mine > main.py").check_returncode()

    header, *rows = run(teacher, "course", "roster", course_id).stdout.splitlines()
    assert header.split()[:4] == ["STUDENT", "ID", "SANDBOX", "STATUS"]
    assert [row.split()[0::2][:2] for row in rows] == [["cli-student", box_id]]
    assert rows[0].split()[3] == "running"
    refused = run(student, "course", "roster", course_id)
    assert refused.returncode == 1 and "teacher" in refused.stderr

    (starter / "hint.txt").write_text("hint\n")
    assert run(teacher, "template", "upload", "cli101", str(starter)).returncode == 0
    update = run(teacher, "course", "update", "CLI 101")
    assert update.returncode == 0, update.stderr
    assert update.stdout.splitlines()[2].split()[:3] == ["cli-student", "updated", "1"]
    assert run(student, "exec", box_name, "--", "cat hint.txt main.py").stdout == "hint\nmine\n"
    mine = run(student, "update-starter", box_name)
    assert mine.returncode == 0 and mine.stdout.split("\t")[1] == "up_to_date"

    reset = run(teacher, "course", "reset", "CLI 101", "cli-student", "-o", str(tmp_path))
    assert reset.returncode == 0, reset.stderr
    saved = Path(reset.stdout.splitlines()[1])
    assert saved.parent == tmp_path and saved.name.endswith(".tar.gz")
    import tarfile

    with tarfile.open(saved, "r:gz") as tar:
        member = tar.extractfile("workspace/main.py")
        assert member is not None and member.read() == b"mine\n"
    out = run(student, "exec", box_name, "--", "cat main.py")
    assert out.stdout == "print('starter')\n"

    in_use = run(teacher, "template", "rm", "cli101")
    assert in_use.returncode == 1 and "cli101" in in_use.stderr
    assert run(teacher, "course", "rm", "CLI 101").returncode == 0
    assert run(teacher, "template", "rm", "cli101").returncode == 0
    assert run(teacher, "template", "list").stdout.splitlines()[1:] == []
    gone = run(student, "course", "join", url)
    assert gone.returncode == 1 and "sandbox-ide:" in gone.stderr
