"""Template Dockerfiles: what the server accepts, and the text it really builds.

A template's Dockerfile adds to the sandbox image; it never replaces it. The text
is checked before any build (docs/security.md, Template images, says why each rule
exists); a refusal is a ``BadRequest`` whose sentence names the line and the fix:

- it starts ``FROM sandbox`` (or the image's exact current tag) and has no other
  stage: the sandbox image holds the agent, and no registry is offered;
- ``COPY``/``ADD`` never target the agent's files or a folder above them, never
  ``--from`` another image, and their destination has no variables;
- ``ENTRYPOINT``, ``CMD``, ``VOLUME``, ``STOPSIGNAL``, ``HEALTHCHECK`` and ``ONBUILD``
  are refused: how the container starts is the server's;
- ``USER`` may change for later steps, but the last one may not be root: programs
  never run as root in a sandbox, whatever the image says;
- at most ``MAX_BYTES`` bytes.

``render`` gives the text built: the placeholder replaced by the tag, and the user
and working folder the agent starts with restored when the Dockerfile changed them.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from dataclasses import dataclass

from sandboxes.errors import BadRequest
from sandboxes.images import image_tag

MAX_BYTES = 64 * 1024
PLACEHOLDER = "sandbox"
# Where the agent and its helper live, and its socket folder (container/Dockerfile).
PROTECTED = (
    "/usr/lib/python3/dist-packages/sandbox_agent",
    "/usr/local/libexec/sandbox-as-user",
    "/run/sandbox-agent",
)
REFUSED = {
    "ENTRYPOINT": "the container's start command is the server's (it starts the agent)",
    "CMD": "the container's start command is the server's (it starts the agent)",
    "VOLUME": "the only volume is /workspace, which the server mounts itself",
    "STOPSIGNAL": "the server stops sandboxes the same way for every image",
    "HEALTHCHECK": "the server checks a sandbox through its agent",
    "ONBUILD": "nothing is built on a template's image",
}
KNOWN = {"FROM", "RUN", "COPY", "ADD", "ENV", "ARG", "LABEL", "WORKDIR", "USER", "SHELL"}
KNOWN |= {"EXPOSE", "MAINTAINER", *REFUSED}
# The base image's working folder (container/Dockerfile).
BASE_WORKDIR = "/workspace"
# Appended after a Dockerfile that changed them: the user and folder the agent
# starts with (container/Dockerfile).
RESTORE = {"USER": "USER root", "WORKDIR": f"WORKDIR {BASE_WORKDIR}"}
_ROOT = re.compile(r"^(root|0)(:.*)?$")
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z]+)\s*=")


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str
    end: int  # its last line (continuations)


def _bad(line: int, message: str, code: str = "invalid_dockerfile") -> BadRequest:
    where = f"Dockerfile line {line}: " if line else "Dockerfile: "
    return BadRequest(where + message, code=code)


def parse(text: str) -> list[Instruction]:
    """The instructions, with continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not pending and _DIRECTIVE.match(stripped) and not out:
            raise _bad(number, "parser directives (such as `# syntax=`) are not accepted.")
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        joined = (pending + stripped).strip()
        pending = ""
        if not joined:
            continue
        keyword, _, args = joined.partition(" ")
        out.append(Instruction(start, keyword.upper(), args.strip(), number))
    if pending.strip():
        raise _bad(start, "the last instruction ends with a line continuation `\\`.")
    return out


def _words(args: str) -> list[str]:
    """Arguments of the JSON form or the plain (space-separated) form."""
    if args.startswith("["):
        try:
            value = json.loads(args)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return args.split()


def _covers(destination: str) -> str | None:
    """The protected path a copy to ``destination`` could write, if any."""
    for path in PROTECTED:
        if destination == path or destination.startswith(path + "/"):
            return path
        if destination == "/" or path.startswith(destination.rstrip("/") + "/"):
            return path
    return None


def _check_copy(item: Instruction, workdir: str | None) -> None:
    words = _words(item.args)
    flags = [w for w in words if w.startswith("--")]
    rest = [w for w in words if not w.startswith("--")]
    for flag in flags:
        if flag.startswith("--from"):
            raise _bad(item.line, f"{item.keyword} --from is refused: only one stage is built.")
    if len(rest) < 2:
        raise _bad(item.line, f"{item.keyword} needs a source and a destination.")
    destination = rest[-1]
    if "$" in destination:
        raise _bad(item.line, f"{item.keyword} destinations may not use variables.")
    if not destination.startswith("/"):
        if workdir is None:
            raise _bad(
                item.line,
                f"give {item.keyword} an absolute destination (the WORKDIR uses a variable).",
            )
        destination = posixpath.join(workdir, destination)
    destination = posixpath.normpath(destination)
    destination = "/" + destination.lstrip("/")
    covered = _covers(destination)
    if covered:
        raise _bad(
            item.line,
            f"{item.keyword} to {destination} could overwrite the sandbox agent ({covered}); "
            "copy somewhere else.",
            "dockerfile_agent",
        )


def validate(text: str) -> list[Instruction]:
    """The Dockerfile's instructions if the server builds it; else BadRequest."""
    if len(text.encode()) > MAX_BYTES:
        raise _bad(0, f"at most {MAX_BYTES} bytes are accepted.", "dockerfile_too_large")
    if "\0" in text:
        raise _bad(0, "the text holds a NUL byte.")
    items = parse(text)
    if not items:
        raise _bad(0, "it holds no instructions; start it with `FROM sandbox`.")
    first = items[0]
    base = _words(first.args)
    allowed = {PLACEHOLDER, image_tag()}
    if (
        first.keyword != "FROM"
        or not base
        or base[0] not in allowed
        or len(base) not in (1, 3)
        or (len(base) == 3 and base[1].upper() != "AS")
    ):
        raise _bad(
            first.line,
            "the first instruction must be `FROM sandbox`: templates build on this "
            "server's sandbox image (it holds the agent), and no other image is offered.",
            "dockerfile_base",
        )
    workdir: str | None = BASE_WORKDIR
    last_user: Instruction | None = None
    for item in items[1:]:
        if item.keyword == "FROM":
            raise _bad(
                item.line,
                "a second FROM is refused: a template's Dockerfile has one stage, on "
                "`FROM sandbox`.",
                "dockerfile_base",
            )
        if item.keyword in REFUSED:
            raise _bad(item.line, f"{item.keyword} is refused: {REFUSED[item.keyword]}.")
        if item.keyword not in KNOWN:
            raise _bad(item.line, f"{item.keyword!r} is not a Dockerfile instruction.")
        if not item.args:
            raise _bad(item.line, f"{item.keyword} needs arguments.")
        if item.keyword in ("COPY", "ADD"):
            _check_copy(item, workdir)
        elif item.keyword == "WORKDIR":
            target = item.args.strip()
            if "$" in target:
                workdir = None
            elif workdir is not None or target.startswith("/"):
                workdir = posixpath.normpath(posixpath.join(workdir or "/", target))
        elif item.keyword == "USER":
            if "$" in item.args:
                raise _bad(item.line, "USER may not use variables.")
            last_user = item
        elif item.keyword == "LABEL" and "sandbox-ide" in item.args:
            raise _bad(item.line, "labels named sandbox-ide… are the server's.")
    if last_user is not None and _ROOT.match(last_user.args.strip()):
        raise _bad(
            last_user.line,
            "the Dockerfile may not end as root: programs in a sandbox always run as the "
            "user `sandbox` (the agent alone starts as root); end with `USER sandbox` or "
            "no USER.",
            "dockerfile_user",
        )
    return items


def render(text: str) -> str:
    """The text the engine builds: the FROM names the current sandbox image, and the
    user and folder the agent starts with are restored if the Dockerfile changed them
    (otherwise its steps are the Dockerfile's own, one for one)."""
    items = validate(text)
    lines = text.splitlines()
    first = items[0]
    words = _words(first.args)
    stage = f" AS {words[2]}" if len(words) == 3 else ""
    lines[first.line - 1 : first.end] = [f"FROM {image_tag()}{stage}"]
    used = {item.keyword for item in items}
    restore = [line for keyword, line in RESTORE.items() if keyword in used]
    if restore:
        lines += ["# Added by the server: how the agent starts (container/Dockerfile).", *restore]
    return "\n".join(lines) + "\n"


def image_for(rendered: str) -> str:
    """The tag of a template image: a hash of all it is built from (the rendered text
    names the sandbox image's own tag, itself a hash of container/)."""
    digest = hashlib.sha256(rendered.encode()).hexdigest()[:16]
    return f"sandbox-ide-template:{digest}"
