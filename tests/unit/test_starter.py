"""Starter code checks that need no sandbox: which repository URLs the server will
fetch (an SSRF surface), which uploaded paths it accepts, and the agent's
nbgitpuller-style merge run on local directories."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from container.agent import starter as agent
from container.agent.failures import AgentFailure
from container.agent.protocol import StarterInstall, StarterUpdate
from sandboxes.errors import BadRequest
from sandboxes.models import Template
from sandboxes.templates import starter


@pytest.mark.parametrize(
    "url",
    [
        "file:///tmp/repo",
        "/tmp/repo",
        "https://127.0.0.1/x.git",
        "http://localhost/x.git",
        "http://10.1.2.3/x.git",
        "http://169.254.169.254/latest/meta-data",
        "https://[::1]/x.git",
        "http://[::ffff:127.0.0.1]/x.git",
        "git://192.168.1.1/x.git",
        "ssh://git@127.0.0.1/x.git",
        "git@127.0.0.1:x.git",
        "ext::sh -c id",
        "ext::sh%20-c%20id",
        "fd::3",
        "-uhttps://example.com/x.git",
        "ftp://8.8.8.8/x.git",
        "https://8.8.8.8/x.git\n",
        "relative/path",
        "",
    ],
)
def test_unsafe_repository_urls_are_refused(settings: object, url: str) -> None:
    settings.TEMPLATE_REPO_ALLOW_LOCAL = False  # type: ignore[attr-defined]
    with pytest.raises(BadRequest) as caught:
        starter.check_url(url)
    assert caught.value.code == "invalid_repo_url"


def test_public_urls_are_pinned_to_the_checked_addresses(settings: object) -> None:
    settings.TEMPLATE_REPO_ALLOW_LOCAL = False  # type: ignore[attr-defined]
    https = starter.check_url("https://bob:s3cret@8.8.8.8/x.git")
    assert "http.curloptResolve=8.8.8.8:443:8.8.8.8" in https.config
    assert "http.followRedirects=false" in https.config
    assert https.display == "https://8.8.8.8/x.git"
    assert https.scrub("fatal: s3cret") == "fatal: ***"
    assert starter.check_url("git@8.8.4.4:team/repo.git").ssh_host == "8.8.4.4"
    assert starter.check_url("git://8.8.8.8/x.git").url == "git://8.8.8.8/x.git"


def test_local_repositories_only_when_allowed(settings: object) -> None:
    settings.TEMPLATE_REPO_ALLOW_LOCAL = True  # type: ignore[attr-defined]
    assert starter.check_url("file:///tmp/repo").local
    assert starter.check_url("http://127.0.0.1:8080/x.git").url.startswith("http://127.0.0.1")
    with pytest.raises(BadRequest):
        starter.check_url("ext::sh -c id")
    settings.TEMPLATE_REPO_ALLOW_LOCAL = False  # type: ignore[attr-defined]
    with pytest.raises(BadRequest):
        starter.check_url("file:///tmp/repo")


@pytest.mark.parametrize(
    ("raw", "clean"),
    [("a.py", "a.py"), ("./src//main.py", "src/main.py"), ("dir\\file.txt", "dir/file.txt")],
)
def test_upload_paths_are_normalised(raw: str, clean: str) -> None:
    assert starter.check_file_path(raw) == clean


@pytest.mark.parametrize(
    "raw", ["", "/etc/passwd", "../x", "a/../../x", ".git/config", "sub/.GIT/hooks/x", ".", "a\0b"]
)
def test_bad_upload_paths_are_refused(raw: str) -> None:
    with pytest.raises(BadRequest):
        starter.check_file_path(raw)


# ------------------------------------------------------------------ the agent's merge


def run(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=T", "-c", "user.email=t@x", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def bundle(src: Path, tmp: Path) -> tuple[str, str]:
    target = tmp / f"b-{run(src, 'rev-parse', 'HEAD')}.bundle"
    run(src, "bundle", "create", str(target), "main")
    return str(target), run(src, "rev-parse", "HEAD")


def test_install_then_merge_keeps_student_work(tmp_path: Path) -> None:
    src, ws = tmp_path / "src", tmp_path / "ws"
    src.mkdir()
    run(src, "init", "-q", "-b", "main")
    (src / "a.py").write_text("one\ntwo\nthree\n")
    (src / "gone.txt").write_text("x\n")
    (src / "exec.sh").write_text("#!/bin/sh\n")
    (src / "exec.sh").chmod(0o755)
    run(src, "add", "-A")
    run(src, "commit", "-qm", "one")
    path, head = bundle(src, tmp_path)
    result = agent.install(StarterInstall(bundle=path, head=head, path=str(ws)))
    assert result["head"] == head and result["files"] == 3
    assert not Path(path).exists()  # the bundle is removed
    assert (ws / "exec.sh").stat().st_mode & 0o111
    # Installing twice is refused (an update is what is wanted then).
    path, head = bundle(src, tmp_path)
    with pytest.raises(AgentFailure):
        agent.install(StarterInstall(bundle=path, head=head, path=str(ws)))

    (ws / "a.py").write_text("one\nSTUDENT\nthree\n")
    (ws / "node_modules").mkdir()
    (ws / "node_modules" / "big.js").write_text("x\n")
    (ws / "gone.txt").unlink()
    (ws / "mine.txt").write_text("mine\n")
    (src / "a.py").write_text("one\nTEACHER\nthree\n")
    (src / "gone.txt").write_text("changed\n")
    (src / "mine.txt").write_text("theirs\n")
    run(src, "add", "-A")
    run(src, "commit", "-qm", "two")
    path, head = bundle(src, tmp_path)
    report = agent.update(StarterUpdate(bundle=path, head=head, path=str(ws)))
    assert report["status"] == "updated"
    assert report["conflicts"] == [
        {"path": "a.py", "kept_as": "a.starter.py", "reason": "both_modified"},
        {"path": "mine.txt", "kept_as": "mine.starter.txt", "reason": "both_added"},
    ]
    assert report["restored"] == ["gone.txt"]
    assert (ws / "a.py").read_text() == "one\nSTUDENT\nthree\n"
    assert (ws / "a.starter.py").read_text() == "one\nTEACHER\nthree\n"
    assert (ws / "mine.txt").read_text() == "mine\n"
    assert (ws / "gone.txt").read_text() == "changed\n"
    assert run(ws, "status", "--porcelain") == ""
    assert run(ws, "ls-files", "node_modules") == ""  # not saved into the student's commit
    assert (ws / "node_modules" / "big.js").exists()

    # The starter deletes a file the student changed: the student's stays.
    (ws / "exec.sh").write_text("#!/bin/sh\necho mine\n")
    run(src, "rm", "-q", "exec.sh")
    run(src, "commit", "-qm", "three")
    path, head = bundle(src, tmp_path)
    report = agent.update(StarterUpdate(bundle=path, head=head, path=str(ws)))
    assert report["conflicts"] == [
        {"path": "exec.sh", "kept_as": None, "reason": "deleted_by_starter"}
    ]
    assert (ws / "exec.sh").read_text() == "#!/bin/sh\necho mine\n"
    path, head = bundle(src, tmp_path)
    assert agent.update(StarterUpdate(bundle=path, head=head, path=str(ws)))["status"] == (
        "up_to_date"
    )


def test_update_of_a_workspace_without_git(tmp_path: Path) -> None:
    """A student who removed .git (or never had the starter) keeps their files; the
    starter is merged beside them."""
    src, ws = tmp_path / "src", tmp_path / "ws"
    src.mkdir()
    ws.mkdir()
    run(src, "init", "-q", "-b", "main")
    (src / "a.py").write_text("starter\n")
    (src / "b.py").write_text("b\n")
    run(src, "add", "-A")
    run(src, "commit", "-qm", "one")
    (ws / "a.py").write_text("student\n")
    path, head = bundle(src, tmp_path)
    report = agent.update(StarterUpdate(bundle=path, head=head, path=str(ws)))
    assert report["status"] == "updated"
    assert [c["kept_as"] for c in report["conflicts"]] == ["a.starter.py"]
    assert (ws / "a.py").read_text() == "student\n"
    assert (ws / "b.py").read_text() == "b\n"


def test_the_sandboxes_origin_never_carries_credentials(settings: object) -> None:
    settings.TEMPLATE_REPO_ALLOW_LOCAL = False  # type: ignore[attr-defined]

    def origin(url: str) -> str:
        return starter._origin(Template(repo_url=url))

    assert origin("https://bob:tok3n@git.example.com/a/b.git") == "https://git.example.com/a/b.git"
    assert origin("ssh://git:pw@example.com/r.git") == "ssh://git@example.com/r.git"
    assert origin("git@github.com:a/b.git") == "git@github.com:a/b.git"
    assert origin("file:///tmp/x") == ""  # a path on the server means nothing in a sandbox
    settings.TEMPLATE_REPO_ALLOW_LOCAL = True  # type: ignore[attr-defined]
    assert origin("file:///tmp/x") == "file:///tmp/x"


def test_server_fetches_a_repository_and_refuses_one_too_large(
    settings: object, tmp_path: Path
) -> None:
    settings.CLASSROOM_DIR = tmp_path / "classroom"  # type: ignore[attr-defined]
    settings.TEMPLATE_REPO_ALLOW_LOCAL = True  # type: ignore[attr-defined]
    settings.TEMPLATE_REPO_MAX_SIZE = 0  # type: ignore[attr-defined]
    src = tmp_path / "src"
    src.mkdir()
    run(src, "init", "-q", "-b", "trunk")
    (src / "a.txt").write_text("a\n")
    run(src, "add", "-A")
    run(src, "commit", "-qm", "one")
    first = run(src, "rev-parse", "HEAD")
    target = tmp_path / "classroom" / "starters" / "t.git"
    source = starter.check_url(f"file://{src}")
    assert starter._fetch(target, source, None) == (first, "trunk")  # the remote's HEAD

    (src / "big.bin").write_bytes(os.urandom(200_000))
    run(src, "add", "-A")
    run(src, "commit", "-qm", "big")
    settings.TEMPLATE_REPO_MAX_SIZE = 100_000  # type: ignore[attr-defined]
    with pytest.raises(BadRequest) as caught:
        starter._fetch(target, source, None)
    assert caught.value.code == "repo_too_large"
    # The starter is what it was, and the big objects are gone again.
    assert run(target, "rev-parse", "refs/heads/trunk") == first
    assert starter._repo_size(target) < 100_000

    with pytest.raises(BadRequest) as caught:
        starter._fetch(target, source, "no-such-branch")
    assert "no-such-branch" in caught.value.message
