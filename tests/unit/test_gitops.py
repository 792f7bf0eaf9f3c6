"""The agent's git helpers that need no repository: credentials out of URLs, git's
status letters, and errors that carry git's reason but never a secret."""

from __future__ import annotations

import pytest

from container.agent.gitops import Call, _file_status, _git_error, _strip_url_credentials
from container.agent.protocol import GitRequest


@pytest.mark.parametrize(
    ("url", "clean", "username", "password"),
    [
        ("https://bob:p%40ss@host/x.git", "https://host/x.git", "bob", "p@ss"),
        ("http://bob@host/x.git", "http://host/x.git", "bob", None),
        ("ssh://git:pw@host/r.git", "ssh://git@host/r.git", None, "pw"),
        ("ssh://git@host/r.git", "ssh://git@host/r.git", None, None),
        ("git@github.com:a/b.git", "git@github.com:a/b.git", None, None),
        ("file:///tmp/origin.git", "file:///tmp/origin.git", None, None),
    ],
)
def test_credentials_come_out_of_urls(
    url: str, clean: str, username: str | None, password: str | None
) -> None:
    call = Call(GitRequest(op="clone"))
    assert _strip_url_credentials(url, call) == clean
    assert (call.username, call.password) == (username, password)


def test_credentials_given_win_over_the_url_and_are_scrubbed() -> None:
    call = Call(GitRequest(op="clone", username="ann", password="given"))
    _strip_url_credentials("https://bob:in-url@host/x.git", call)
    assert (call.username, call.password) == ("ann", "given")

    class Failure(Exception):
        stderr = "stderr: 'fatal: Authentication failed for given and in-url'"

    error = _git_error(Failure(), call, "git clone")
    assert error.code == "git_auth_failed"
    assert "given" not in error.message and "in-url" not in error.message


def test_a_token_alone_gets_a_user_name() -> None:
    call = Call(GitRequest(op="clone", token="t0k"))
    assert (call.username, call.password) == ("x-access-token", "t0k")


@pytest.mark.parametrize(
    ("xy", "status"),
    [
        ("??", "untracked"),
        (" M", "modified"),
        ("M ", "modified"),
        ("MM", "modified"),
        ("A ", "added"),
        ("AM", "added"),
        (" D", "deleted"),
        ("D ", "deleted"),
        ("R ", "renamed"),
        ("UU", "conflicted"),
        ("AA", "conflicted"),
        (" T", "modified"),
    ],
)
def test_status_letters(xy: str, status: str) -> None:
    assert _file_status(xy) == status


def test_git_errors_keep_gits_reason() -> None:
    class Failure(Exception):
        stderr = "stderr: 'Cloning into x...\nfatal: repository 'file:///nope' does not exist\n'"

    error = _git_error(Failure(), Call(GitRequest(op="clone")), "git clone")
    assert error.code == "git_error"
    assert "fatal: repository 'file:///nope' does not exist" in error.message
