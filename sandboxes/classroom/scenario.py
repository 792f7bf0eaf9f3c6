"""Reading and checking a tutorial in the Killercoda scenario layout.

A scenario is plain files: ``index.json`` names a title, a description, an intro,
steps and a finish, each a markdown ``text`` with optional ``background``,
``foreground`` and ``verify`` scripts, and an ``assets`` section of files copied
into the machine. Code in the markdown is marked ``{{exec}}``, ``{{exec
interrupt}}`` or ``{{copy}}``.

This module is pure (no Django, no I/O): ``read`` takes the files of a starter as a
mapping and gives a ``Scenario`` with every problem found, each naming its file and
line, and every part of the scenario we cannot give (another backend image, a
second host) by name in ``unsupported``. Markdown comes back rewritten for our
renderer: annotated code becomes numbered actions and relative images point at
``files_url``.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, Literal

# Where a starter may keep its tutorial; the first holding an index.json wins.
ROOTS = ("", "tutorial/")
MAX_SCRIPT_BYTES = 64 * 1024
MAX_TEXT_BYTES = 512 * 1024
MAX_STEPS = 100
# Backend images that are "a Linux machine with a shell": ours is one.
LINUX_IMAGES = re.compile(r"^(ubuntu|debian)([-.:].*)?$")

Level = Literal["error", "warning"]
ActionKind = Literal["exec", "copy"]


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    message: str
    level: Level = "error"

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "message": self.message, "level": self.level}

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class Action:
    """A marked code snippet: Run types ``code`` into a terminal, Copy copies it."""

    index: int
    kind: ActionKind
    code: str
    interrupt: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "kind": self.kind,
            "code": self.code,
            "interrupt": self.interrupt,
        }


@dataclass(frozen=True)
class Page:
    """The intro, a step or the finish: its markdown and scripts (their text)."""

    index: int
    title: str
    text_file: str
    markdown: str
    actions: tuple[Action, ...] = ()
    background: str | None = None
    foreground: str | None = None
    verify: str | None = None


@dataclass(frozen=True)
class Asset:
    """A file copied into the sandbox when the tutorial starts."""

    path: str  # in the starter
    target: str  # a directory in the sandbox
    data: bytes
    executable: bool = False


@dataclass
class Scenario:
    root: str = ""
    title: str = ""
    description: str = ""
    intro: Page | None = None
    steps: list[Page] = field(default_factory=list)
    finish: Page | None = None
    assets: list[Asset] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    @property
    def valid(self) -> bool:
        return not self.errors


# A starter's files: path -> (git mode, content).
Files = dict[str, tuple[int, bytes]]
EXECUTABLE = 0o100755


def find_root(files: Files) -> str | None:
    """The folder holding the tutorial's index.json, or None if there is none."""
    for root in ROOTS:
        if f"{root}index.json" in files:
            return root
    return None


def read(files: Files, files_url: str = "") -> Scenario | None:
    """The tutorial in ``files`` (None when the starter has none), with its problems."""
    root = find_root(files)
    if root is None:
        return None
    return _Reader(files, root, files_url).read()


# ----------------------------------------------------------------------- the reader


def _line_of(text: str, needle: str) -> int | None:
    """The line of index.json where a quoted value first appears (for messages)."""
    at = text.find(json.dumps(needle))
    return text.count("\n", 0, at) + 1 if at >= 0 else None


class _Reader:
    def __init__(self, files: Files, root: str, files_url: str) -> None:
        self.files = files
        self.root = root
        self.files_url = files_url.rstrip("/")
        self.index_file = f"{root}index.json"
        self.index_text = ""
        self.scenario = Scenario(root=root)
        self.action_count = 0

    def problem(self, message: str, file: str | None = None, line: int | None = None) -> None:
        self.scenario.problems.append(Problem(file or self.index_file, line, message))

    def warn(self, message: str, file: str | None = None, line: int | None = None) -> None:
        self.scenario.problems.append(
            Problem(file or self.index_file, line, message, level="warning")
        )

    def unsupported(self, what: str) -> None:
        if what not in self.scenario.unsupported:
            self.scenario.unsupported.append(what)

    def read(self) -> Scenario:
        raw = self.files[self.index_file][1]
        try:
            self.index_text = raw.decode("utf-8")
            index = json.loads(self.index_text)
        except UnicodeDecodeError:
            self.problem("index.json is not UTF-8 text.", line=None)
            return self.scenario
        except json.JSONDecodeError as exc:
            self.problem(f"index.json is not valid JSON: {exc.msg}.", line=exc.lineno)
            return self.scenario
        if not isinstance(index, dict):
            self.problem("index.json must hold a JSON object.", line=1)
            return self.scenario
        self.scenario.title = self.string(index, "title", required=True)
        self.scenario.description = self.string(index, "description")
        for key in index:
            if key not in ("title", "description", "details", "backend"):
                self.unsupported(key)
        self.backend(index.get("backend"))
        details = index.get("details")
        if not isinstance(details, dict):
            self.problem('index.json needs a "details" object with the steps.', line=1)
            return self.scenario
        for key in details:
            if key not in ("intro", "steps", "finish", "assets"):
                self.unsupported(f"details.{key}")
        if details.get("intro") is not None:
            self.scenario.intro = self.page(details["intro"], 0, "details.intro", "Introduction")
        steps = details.get("steps")
        if not isinstance(steps, list) or not steps:
            self.problem('"details.steps" must be a list of at least one step.', line=None)
        elif len(steps) > MAX_STEPS:
            self.problem(f"A tutorial has at most {MAX_STEPS} steps; this one has {len(steps)}.")
        else:
            for number, step in enumerate(steps, start=1):
                page = self.page(step, number, f"details.steps[{number - 1}]", f"Step {number}")
                if page is not None:
                    self.scenario.steps.append(page)
        if details.get("finish") is not None:
            finish_index = len(self.scenario.steps) + 1
            self.scenario.finish = self.page(
                details["finish"], finish_index, "details.finish", "Finished"
            )
        self.assets(details.get("assets"))
        return self.scenario

    def string(self, obj: dict[str, Any], key: str, required: bool = False) -> str:
        value = obj.get(key)
        if value is None:
            if required:
                self.problem(f'"{key}" is missing.', line=1)
            return ""
        if not isinstance(value, str):
            self.problem(f'"{key}" must be a string.', line=_line_of(self.index_text, key))
            return ""
        return value

    def backend(self, backend: Any) -> None:
        if backend is None:
            return
        if not isinstance(backend, dict):
            self.problem('"backend" must be an object.', line=_line_of(self.index_text, "backend"))
            return
        image = backend.get("imageid")
        if isinstance(image, str) and not LINUX_IMAGES.match(image):
            self.unsupported(f"backend image {image!r}")
        for key in backend:
            if key != "imageid":
                self.unsupported(f"backend.{key}")

    def path_of(self, name: str, where: str) -> str | None:
        """A file named in index.json, relative to the tutorial's folder; a problem
        if it escapes the folder or does not exist."""
        line = _line_of(self.index_text, name)
        clean = posixpath.normpath(name.replace("\\", "/")).lstrip("/")
        if name.startswith("/") or clean == ".." or clean.startswith("../"):
            self.problem(f"{where} names {name!r}, outside the tutorial's folder.", line=line)
            return None
        path = f"{self.root}{clean}"
        if path not in self.files:
            self.problem(f"{where} names {name!r}, which does not exist.", line=line)
            return None
        return path

    def text_file(self, name: Any, where: str, limit: int) -> tuple[str, str] | None:
        """(path, text) of a file named at ``where``, or None with a problem."""
        if not isinstance(name, str) or not name:
            self.problem(f"{where} must name a file.", line=None)
            return None
        path = self.path_of(name, where)
        if path is None:
            return None
        data = self.files[path][1]
        if len(data) > limit:
            self.problem(f"{path} has {len(data)} bytes; at most {limit} are allowed.", file=path)
            return None
        try:
            return path, data.decode("utf-8")
        except UnicodeDecodeError:
            self.problem("The file is not UTF-8 text.", file=path)
            return None

    def page(self, obj: Any, index: int, where: str, default_title: str) -> Page | None:
        if not isinstance(obj, dict):
            self.problem(f"{where} must be an object.", line=None)
            return None
        for key in obj:
            if key not in ("title", "text", "background", "foreground", "verify"):
                self.unsupported(f"{where}.{key}")
        title = obj.get("title", default_title)
        if not isinstance(title, str):
            self.problem(
                f"{where}.title must be a string.", line=_line_of(self.index_text, "title")
            )
            title = default_title
        text = self.text_file(obj.get("text"), f"{where}.text", MAX_TEXT_BYTES)
        scripts: dict[str, str | None] = {}
        for kind in ("background", "foreground", "verify"):
            scripts[kind] = None
            if obj.get(kind) is None:
                continue
            found = self.text_file(obj[kind], f"{where}.{kind}", MAX_SCRIPT_BYTES)
            if found is None:
                continue
            path, script = found
            scripts[kind] = script
            if kind == "verify" and self.files[path][0] != EXECUTABLE:
                self.warn(
                    "The verify script is not executable (git mode 100644); it runs with "
                    "bash here, but mark it executable (chmod +x) so it runs anywhere.",
                    file=path,
                    line=1,
                )
        if text is None:
            return None
        path, markdown = text
        rewritten, actions = self.markdown(path, markdown)
        return Page(
            index=index,
            title=title or default_title,
            text_file=path,
            markdown=rewritten,
            actions=tuple(actions),
            background=scripts["background"],
            foreground=scripts["foreground"],
            verify=scripts["verify"],
        )

    def assets(self, assets: Any) -> None:
        if assets is None:
            return
        if not isinstance(assets, dict):
            self.problem(
                '"details.assets" must be an object.', line=_line_of(self.index_text, "assets")
            )
            return
        for host, entries in assets.items():
            if host != "host01":
                self.unsupported(f"assets for {host!r} (there is one machine, host01)")
                continue
            if not isinstance(entries, list):
                self.problem(f'"details.assets.{host}" must be a list.')
                continue
            for entry in entries:
                self.asset(entry)

    def asset(self, entry: Any) -> None:
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            self.problem('Each asset needs a "file" (a name or pattern under assets/).')
            return
        target = entry.get("target", "~")
        if not isinstance(target, str) or not target:
            self.problem(f"The asset {entry['file']!r} needs a target directory.")
            return
        pattern = f"{self.root}assets/{entry['file'].lstrip('/')}"
        regex = re.compile(re.escape(pattern).replace(r"\*\*", ".*").replace(r"\*", "[^/]*") + "$")
        matched = sorted(p for p in self.files if regex.match(p))
        if not matched:
            self.problem(
                f"The asset {entry['file']!r} matches no file under assets/.",
                line=_line_of(self.index_text, entry["file"]),
            )
            return
        chmod = entry.get("chmod")
        for path in matched:
            mode, data = self.files[path]
            executable = mode == EXECUTABLE or (isinstance(chmod, str) and "x" in chmod)
            relative = path[len(f"{self.root}assets/") :]
            self.scenario.assets.append(Asset(relative, target, data, executable))

    # ------------------------------------------------------------------ markdown

    def markdown(self, path: str, text: str) -> tuple[str, list[Action]]:
        """Annotated code as numbered actions, relative images through ``files_url``,
        and a warning for every annotation we do not know, with its line."""
        actions: list[Action] = []
        out: list[str] = []
        lines = text.split("\n")
        fence: tuple[str, int, list[str]] | None = None  # (char, length, body)
        opening_at = 0
        for number, line in enumerate(lines, start=1):
            if fence is None:
                opened = _FENCE_OPEN.match(line)
                if opened:
                    fence = (opened["fence"][0], len(opened["fence"]), [])
                    opening_at = len(out)
                    out.append(line)
                    continue
                out.append(self.inline(path, number, line, actions))
                continue
            char, length, body = fence
            closed = _FENCE_CLOSE.match(line)
            if closed and closed["fence"][0] == char and len(closed["fence"]) >= length:
                annotation = (closed["annotation"] or "").strip()
                if annotation:
                    kind = self.annotation(path, number, annotation)
                    if kind is not None:
                        action = self.action(actions, kind, "\n".join(body))
                        indent, ticks = closed["indent"], closed["fence"]
                        out[opening_at] = f"{indent}{ticks}tutorial-action-{action.index}"
                out.append(f"{closed['indent']}{closed['fence']}")
                fence = None
                continue
            body.append(line)
            out.append(line)
        if fence is not None:
            self.warn("A code block is not closed.", file=path, line=len(lines))
        return "\n".join(out), actions

    def action(self, actions: list[Action], kind: tuple[ActionKind, bool], code: str) -> Action:
        action = Action(self.action_count, kind[0], code, kind[1])
        self.action_count += 1
        actions.append(action)
        return action

    def annotation(self, path: str, line: int, annotation: str) -> tuple[ActionKind, bool] | None:
        words = annotation.strip("{} \t").split()
        known = {
            ("exec",): ("exec", False),
            ("execute",): ("exec", False),
            ("exec", "interrupt"): ("exec", True),
            ("execute", "interrupt"): ("exec", True),
            ("copy",): ("copy", False),
        }
        kind = known.get(tuple(w.lower() for w in words))
        if kind is None:
            self.warn(
                f"Unknown annotation {{{{{' '.join(words)}}}}}: use {{{{exec}}}}, "
                "{{exec interrupt}} or {{copy}}; the code is shown without a button.",
                file=path,
                line=line,
            )
            self.unsupported(f"the {{{{{' '.join(words)}}}}} annotation")
            return None
        return kind[0], kind[1]  # type: ignore[return-value]

    def inline(self, path: str, number: int, line: str, actions: list[Action]) -> str:
        def code(match: re.Match[str]) -> str:
            kind = self.annotation(path, number, match["annotation"])
            if kind is None:
                return match["code"]
            action = self.action(actions, kind, match["body"])
            return f"[{match['code']}](#tutorial-action-{action.index})"

        line = _INLINE_ACTION.sub(code, line)
        for stray in _ANNOTATION.finditer(line):
            if not _TEMPLATE_VARIABLE.match(stray[1]):
                self.annotation(path, number, stray[0])
            else:
                self.unsupported(f"the {{{{{stray[1]}}}}} variable")
                self.warn(f"{{{{{stray[1]}}}}} is Killercoda's; it is shown as is.", path, number)
        return _IMAGE.sub(lambda m: self.image(path, m), line)

    def image(self, path: str, match: re.Match[str]) -> str:
        url = match["url"]
        if re.match(r"^([a-z][a-z0-9+.-]*:|/|#)", url, re.IGNORECASE) or not self.files_url:
            return match[0]
        target = posixpath.normpath(posixpath.join(posixpath.dirname(path), url))
        return f"![{match['alt']}]({self.files_url}/{target}{match['rest']})"


_FENCE_OPEN = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_FENCE_CLOSE = re.compile(
    r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<annotation>\{\{[^}]*\}\})?\s*$"
)
_INLINE_ACTION = re.compile(r"(?P<code>`(?P<body>[^`]+)`)(?P<annotation>\{\{[^}]*\}\})")
_ANNOTATION = re.compile(r"\{\{\s*([^}]*?)\s*\}\}")
_TEMPLATE_VARIABLE = re.compile(r"^[A-Z][A-Z0-9_]*$")
_IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\(\s*(?P<url>[^)\s]+)(?P<rest>[^)]*)\)")
