"""The text rules for template Dockerfiles (sandboxes/templates/dockerfile.py),
without an engine: what is refused with which code, and the text really built."""

from __future__ import annotations

import pytest

from sandboxes.errors import BadRequest
from sandboxes.images import image_tag
from sandboxes.templates import dockerfile


def refusal(text: str) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        dockerfile.validate(text)
    return caught.value


@pytest.mark.parametrize(
    ("text", "code", "line"),
    [
        ("", "invalid_dockerfile", 0),
        ("# only a comment\n", "invalid_dockerfile", 0),
        ("FROM alpine\n", "dockerfile_base", 1),
        ("ARG BASE=sandbox\nFROM ${BASE}\n", "dockerfile_base", 1),
        ("FROM --platform=linux/amd64 sandbox\n", "dockerfile_base", 1),
        ("FROM sandbox AS a\nFROM a\n", "dockerfile_base", 2),
        ("# syntax=docker/dockerfile:1\nFROM sandbox\n", "invalid_dockerfile", 1),
        ("FROM sandbox\nCOPY --from=alpine /bin/sh /opt/sh\n", "invalid_dockerfile", 2),
        ("FROM sandbox\nCOPY x /\n", "dockerfile_agent", 2),
        ("FROM sandbox\nCOPY x /usr/\n", "dockerfile_agent", 2),
        ('FROM sandbox\nADD ["x", "/run/sandbox-agent/agent.sock"]\n', "dockerfile_agent", 2),
        ("FROM sandbox\nWORKDIR /usr/lib/python3\nCOPY x dist-packages/\n", "dockerfile_agent", 3),
        ("FROM sandbox\nWORKDIR /opt\nCOPY x ../usr/local/libexec\n", "dockerfile_agent", 3),
        ("FROM sandbox\nCOPY x $HOME/y\n", "invalid_dockerfile", 2),
        ("FROM sandbox\nWORKDIR $X\nCOPY x y\n", "invalid_dockerfile", 3),
        ("FROM sandbox\nUSER root\n", "dockerfile_user", 2),
        ("FROM sandbox\nUSER sandbox\nRUN x\nUSER 0\nRUN y\n", "dockerfile_user", 4),
        ("FROM sandbox\nUSER $WHO\n", "invalid_dockerfile", 2),
        ('FROM sandbox\nCMD ["bash"]\n', "invalid_dockerfile", 2),
        ("FROM sandbox\nVOLUME /data\n", "invalid_dockerfile", 2),
        ("FROM sandbox\nONBUILD RUN x\n", "invalid_dockerfile", 2),
        ("FROM sandbox\nFETCH x\n", "invalid_dockerfile", 2),
        ("FROM sandbox\nLABEL sandbox-ide.image=true\n", "invalid_dockerfile", 2),
        ("FROM sandbox\nRUN echo \\\n", "invalid_dockerfile", 2),
        ("FROM sandbox\n" + "RUN true\n" * 8000, "dockerfile_too_large", 0),
    ],
)
def test_refused(text: str, code: str, line: int) -> None:
    error = refusal(text)
    assert error.code == code, error.message
    assert error.message.startswith(f"Dockerfile line {line}:" if line else "Dockerfile:")


@pytest.mark.parametrize(
    "text",
    [
        "FROM sandbox\nRUN apt-get update \\\n && apt-get install -y sqlite3\n",
        "# a comment first\n\nfrom sandbox as lesson\nrun true\n",
        f"FROM {image_tag()}\nUSER root\nRUN x\nUSER sandbox\n",
        "FROM sandbox\nWORKDIR /opt/tools\nCOPY a.txt b/\nADD x /usr/local/bin/\n",
        'FROM sandbox\nENV A=1\nSHELL ["/bin/bash", "-c"]\nEXPOSE 8000\nUSER 1000:1000\n',
    ],
)
def test_accepted(text: str) -> None:
    assert dockerfile.validate(text)


def test_render_names_the_current_image_and_restores_the_start() -> None:
    rendered = dockerfile.render("FROM sandbox AS lesson\nUSER sandbox\nRUN make\n")
    lines = rendered.splitlines()
    assert lines[0] == f"FROM {image_tag()} AS lesson"
    assert lines[-1] == "USER root"  # its USER is undone; WORKDIR was never changed
    plain = dockerfile.render("FROM sandbox\nRUN make\n").splitlines()
    assert plain == [f"FROM {image_tag()}", "RUN make"]  # its own steps, one for one
    moved = dockerfile.render("FROM sandbox\nWORKDIR /opt\nUSER sandbox\n").splitlines()
    assert moved[-2:] == ["USER root", "WORKDIR /workspace"]
    same = dockerfile.image_for(rendered)
    assert same == dockerfile.image_for(
        dockerfile.render("FROM sandbox AS lesson\nUSER sandbox\nRUN make\n")
    )
    assert same != dockerfile.image_for(dockerfile.render("FROM sandbox\nRUN make\n"))
    assert same.startswith("sandbox-ide-template:")
    # A FROM over several lines becomes one.
    assert dockerfile.render("FROM \\\n  sandbox\nRUN make\n").splitlines()[:2] == [
        f"FROM {image_tag()}",
        "RUN make",
    ]
