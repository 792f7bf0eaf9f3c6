"""``sandbox-ide``: sandboxes from the command line (addressed by name).

    sandbox-ide create NAME            sandbox-ide ls
    sandbox-ide exec NAME -- CMD...    sandbox-ide shell NAME
    sandbox-ide cp SRC DEST            (NAME:/path on one side)
    sandbox-ide expose NAME PORT       sandbox-ide rm NAME
    sandbox-ide share NAME PORT LEVEL  (private, course, authenticated, public)
    sandbox-ide update-starter NAME    sandbox-ide mcp    (an MCP server on stdio)
    sandbox-ide fork NAME [--count N]  sandbox-ide restore NAME SNAPSHOT
    sandbox-ide snapshot create|list|rm ...
    sandbox-ide template create|list|upload|refresh|build|validate|rm ...
    sandbox-ide course create|list|invite|join|roster|update|reset|rm ...

Configured by SANDBOX_IDE_URL and SANDBOX_IDE_TOKEN (or --url / --token).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import posixpath
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from ._sync import Course, Sandbox, Template
from .errors import InvalidRequestError, NotFoundError, SandboxIDEError


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    tail: list[str] = []
    if "exec" in argv and "--" in argv and argv.index("exec") < argv.index("--"):
        cut = argv.index("--")  # everything after `--` is the command, untouched
        argv, tail = argv[:cut], argv[cut + 1 :]
    args = parser.parse_args(argv)
    if tail:
        args.command = [*args.command, *tail]
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.handler(args) or 0)
    except SandboxIDEError as exc:
        print(f"sandbox-ide: {exc.message}", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        print(f"sandbox-ide: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `sandbox-ide exec ... | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sandbox-ide",
        description="Work with Sandbox IDE sandboxes (addressed by name).",
    )
    parser.add_argument("--url", help="server URL (default: $SANDBOX_IDE_URL)")
    parser.add_argument("--token", help="API token (default: $SANDBOX_IDE_TOKEN)")
    parser.add_argument("--version", action="version", version=f"sandbox-ide {__version__}")
    sub = parser.add_subparsers(metavar="COMMAND")

    p = sub.add_parser("create", help="get or create a sandbox")
    p.add_argument("name")
    p.add_argument("--template")
    p.add_argument("--snapshot", help="start from this snapshot (an id)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--sleep-after", type=int, metavar="SECONDS")
    p.add_argument("--keep-alive", action="store_true", default=None)
    p.set_defaults(handler=cmd_create)

    p = sub.add_parser("ls", help="list your sandboxes")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_ls)

    p = sub.add_parser("exec", help="run a command, streaming its output")
    p.add_argument("name")
    p.add_argument("command", nargs="*", help="-- CMD [ARGS...] (one argument: a shell line)")
    p.add_argument("--cwd")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--timeout", type=float)
    p.set_defaults(handler=cmd_exec)

    p = sub.add_parser("shell", help="an interactive shell in the sandbox")
    p.add_argument("name")
    p.add_argument("--terminal", default=None, help="terminal name (default: cli-<pid>)")
    p.set_defaults(handler=cmd_shell)

    p = sub.add_parser("cp", help="copy files or folders: cp SRC NAME:/path, cp NAME:/path DEST")
    p.add_argument("source")
    p.add_argument("destination")
    progress = p.add_mutually_exclusive_group()
    progress.add_argument("--progress", action="store_true", default=None, help="always show")
    progress.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    p.set_defaults(handler=cmd_cp)

    p = sub.add_parser("expose", help="expose a port at a preview URL")
    p.add_argument("name")
    p.add_argument("port", type=int)
    p.add_argument("--label", dest="label", help="a name for the port")
    p.add_argument(
        "--visibility",
        choices=LEVELS,
        help="who may open it (default: public, anyone with the URL)",
    )
    p.add_argument("--expires", type=int, metavar="SECONDS", help="the share ends after this")
    p.set_defaults(handler=cmd_expose)

    p = sub.add_parser("share", help="say who may open an exposed port, and for how long")
    p.add_argument("name")
    p.add_argument("port", type=int)
    p.add_argument("visibility", choices=LEVELS, help="private revokes the link at once")
    p.add_argument("--expires", type=int, metavar="SECONDS", help="the share ends after this")
    p.set_defaults(handler=cmd_share)

    p = sub.add_parser("rm", help="destroy sandboxes (container and workspace)")
    p.add_argument("names", nargs="+", metavar="name")
    p.set_defaults(handler=cmd_rm)

    p = sub.add_parser("mcp", help="serve the sandboxes to an MCP client on stdin/stdout")
    p.set_defaults(handler=cmd_mcp)

    p = sub.add_parser("update-starter", help="merge the template's newest starter code")
    p.add_argument("name")
    p.set_defaults(handler=cmd_update_starter)

    p = sub.add_parser("fork", help="snapshot a sandbox and start copies of it")
    p.add_argument("name")
    p.add_argument("--count", type=int, default=1, help="how many copies, 1 to 10 (default 1)")
    p.set_defaults(handler=cmd_fork)

    p = sub.add_parser("restore", help="roll a sandbox back to one of your snapshots")
    p.add_argument("name")
    p.add_argument("snapshot", help="the snapshot's id")
    p.set_defaults(handler=cmd_restore)

    _snapshot_parser(sub)
    _template_parser(sub)
    _course_parser(sub)
    _tutorial_parser(sub)
    return parser


def _tutorial_parser(sub: Any) -> None:
    group = sub.add_parser("tutorial", help="a sandbox's guided tutorial: steps and checks")
    usub = group.add_subparsers(metavar="ACTION")
    group.set_defaults(handler=lambda args: _usage(group))

    p = usub.add_parser("show", help="the steps and where you are, or one step's text")
    p.add_argument("name", help="sandbox name or id")
    p.add_argument("step", nargs="?", type=int, help="0: intro, 1..N: a step, N+1: finish")
    p.set_defaults(handler=cmd_tutorial_show)

    p = usub.add_parser("check", help="run the current step's check (exit 1 if it fails)")
    p.add_argument("name", help="sandbox name or id")
    p.set_defaults(handler=cmd_tutorial_check)


def _snapshot_parser(sub: Any) -> None:
    group = sub.add_parser("snapshot", help="snapshots: a sandbox's files kept")
    ssub = group.add_subparsers(metavar="ACTION")
    group.set_defaults(handler=lambda args: _usage(group))

    p = ssub.add_parser("create", help="snapshot a sandbox's workspace and installed packages")
    p.add_argument("sandbox")
    p.add_argument("--name", help="the snapshot's name (default: generated)")
    p.set_defaults(handler=cmd_snapshot_create)

    p = ssub.add_parser("list", aliases=["ls"], help="your snapshots (of one sandbox)")
    p.add_argument("sandbox", nargs="?")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_snapshot_list)

    p = ssub.add_parser("rm", help="delete snapshots (by id)")
    p.add_argument("ids", nargs="+", metavar="id")
    p.set_defaults(handler=cmd_snapshot_rm)


def _template_parser(sub: Any) -> None:
    group = sub.add_parser("template", help="templates: starter code and setup for sandboxes")
    tsub = group.add_subparsers(metavar="ACTION")
    group.set_defaults(handler=lambda args: _usage(group))

    p = tsub.add_parser("create", help="make a template (starter from files and/or a repo)")
    p.add_argument("name")
    p.add_argument(
        "--files",
        nargs="+",
        default=[],
        metavar="PATH",
        help="starter files: a folder (its contents) or files (by name)",
    )
    p.add_argument("--repo", dest="repo_url", metavar="URL", help="starter repository")
    p.add_argument("--branch", dest="repo_branch")
    p.add_argument("--setup", dest="setup_command", metavar="CMD", help="run in new sandboxes")
    p.add_argument("--image")
    p.add_argument(
        "--dockerfile", metavar="FILE", help="steps on the sandbox image (FROM sandbox), built now"
    )
    p.add_argument("--description")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--open", dest="open_files", action="append", metavar="FILE")
    p.add_argument("--preview-port", type=int, metavar="PORT")
    p.add_argument("--warm-pool", type=int, metavar="N", help="ready sandboxes kept for joins")
    p.add_argument("-m", "--message", help="commit message for the files")
    p.set_defaults(handler=cmd_template_create)

    p = tsub.add_parser("list", aliases=["ls"], help="list your templates")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_template_list)

    p = tsub.add_parser("upload", help="commit files on top of a template's starter")
    p.add_argument("template", help="name or id")
    p.add_argument("paths", nargs="+", metavar="PATH", help="a folder (its contents) or files")
    p.add_argument("-m", "--message", help="commit message")
    p.set_defaults(handler=cmd_template_upload)

    p = tsub.add_parser("refresh", help="fetch the template's repository again")
    p.add_argument("template", help="name or id")
    p.set_defaults(handler=cmd_template_refresh)

    p = tsub.add_parser("validate", help="check the starter's tutorial (exit 1 on errors)")
    p.add_argument("template", help="name or id")
    p.set_defaults(handler=cmd_template_validate)

    p = tsub.add_parser("build", help="build a template's Dockerfile, printing its log")
    p.add_argument("template", help="name or id")
    p.set_defaults(handler=cmd_template_build)

    p = tsub.add_parser("rm", help="delete templates")
    p.add_argument("templates", nargs="+", metavar="template")
    p.set_defaults(handler=cmd_template_rm)


def _course_parser(sub: Any) -> None:
    group = sub.add_parser("course", help="courses: invites, roster, resets, starter updates")
    csub = group.add_subparsers(metavar="ACTION")
    group.set_defaults(handler=lambda args: _usage(group))

    p = csub.add_parser("create", help="start a course on one of your templates")
    p.add_argument("name")
    p.add_argument("--template", required=True, help="template name or id")
    p.set_defaults(handler=cmd_course_create)

    p = csub.add_parser("list", aliases=["ls"], help="courses you teach or joined")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_course_list)

    p = csub.add_parser("invite", help="make an invite link (prints its URL)")
    p.add_argument("course", help="name or id")
    p.add_argument("--days", type=float, help="valid for this many days (default: 14)")
    p.set_defaults(handler=cmd_course_invite)

    p = csub.add_parser("join", help="join a course with an invite link or token")
    p.add_argument("invite", help="the invite's URL or token")
    p.set_defaults(handler=cmd_course_join)

    p = csub.add_parser("roster", help="the students and their sandboxes")
    p.add_argument("course", help="name or id")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_course_roster)

    p = csub.add_parser("progress", help="each student's tutorial step and last check")
    p.add_argument("course", help="name or id")
    p.add_argument("--csv", action="store_true", help="print CSV")
    p.set_defaults(handler=cmd_course_progress)

    p = csub.add_parser("update", help="merge the newest starter into every student's work")
    p.add_argument("course", help="name or id")
    p.set_defaults(handler=cmd_course_update)

    p = csub.add_parser("reset", help="archive a student's workspace and restore the starter")
    p.add_argument("course", help="name or id")
    p.add_argument("student", help="username")
    p.add_argument("-o", "--output", metavar="PATH", help="also download the archive here")
    p.set_defaults(handler=cmd_course_reset)

    p = csub.add_parser("rm", help="delete a course (students keep their sandboxes)")
    p.add_argument("course", help="name or id")
    p.set_defaults(handler=cmd_course_rm)


def _env(pairs: list[str]) -> dict[str, str] | None:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidRequestError(f"--env takes KEY=VALUE, not {pair!r}.")
        env[key] = value
    return env or None


def _open(args: argparse.Namespace, name: str) -> Sandbox:
    return Sandbox.from_name(name, url=args.url, token=args.token)


def cmd_create(args: argparse.Namespace) -> int:
    before = {s.name for s in Sandbox.list(url=args.url, token=args.token)}
    with Sandbox.get_or_create(
        args.name,
        template=args.template,
        snapshot=args.snapshot,
        env=_env(args.env),
        sleep_after=args.sleep_after,
        keep_alive=args.keep_alive,
        url=args.url,
        token=args.token,
    ) as sb:
        state = "exists" if sb.name in before else "created"
        print(f"{sb.name}\t{sb.id}\t{sb.status}\t{state}")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    sandboxes = Sandbox.list(url=args.url, token=args.token)
    if args.json:
        rows = [
            {"id": s.id, "name": s.name, "status": s.status, "created_at": str(s.created_at)}
            for s in sandboxes
        ]
        print(json.dumps(rows, indent=2))
        return 0
    table = [("NAME", "ID", "STATUS", "CREATED")]
    for s in sandboxes:
        created = s.created_at.strftime("%Y-%m-%d %H:%M") if s.created_at else ""
        table.append((s.name, s.id, s.status, created))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    command = list(args.command)
    if not command:
        raise InvalidRequestError("Give a command: sandbox-ide exec NAME -- CMD [ARGS...].")
    run: str | list[str] = command[0] if len(command) == 1 else command

    def out(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    def err(text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()

    with _open(args, args.name) as sb:
        result = sb.exec(
            run,
            cwd=args.cwd,
            env=_env(args.env),
            timeout=args.timeout,
            on_stdout=out,
            on_stderr=err,
        )
    if result.timed_out:
        print(f"sandbox-ide: the command timed out after {args.timeout} s", file=sys.stderr)
        return 124
    return result.exit_code if result.exit_code is not None else 1


# -- shell ----------------------------------------------------------------------------------


def cmd_shell(args: argparse.Namespace) -> int:
    import termios
    import tty

    name = args.terminal or f"cli-{os.getpid()}"
    stdin_fd = sys.stdin.fileno()
    interactive = os.isatty(stdin_fd)
    cols, rows = _terminal_size()
    with _open(args, args.name) as sb:
        term = sb.terminal(name, cols=cols, rows=rows).connect()
        saved = termios.tcgetattr(stdin_fd) if interactive else None
        stop = threading.Event()
        resized = threading.Event()
        previous = signal.getsignal(signal.SIGWINCH)
        signal.signal(signal.SIGWINCH, lambda *_: resized.set())
        try:
            if interactive:
                tty.setraw(stdin_fd, termios.TCSANOW)  # keep typed-ahead input
            reader = threading.Thread(target=_pump_output, args=(term, stop), daemon=True)
            reader.start()
            _pump_input(term, stdin_fd, stop, resized)
        finally:
            if saved is not None:
                termios.tcsetattr(stdin_fd, termios.TCSADRAIN, saved)
            signal.signal(signal.SIGWINCH, previous)
            term.close()
            if not args.terminal:
                with contextlib.suppress(SandboxIDEError):
                    sb.terminals.kill(name)
    return term.exit_code if term.exit_code is not None else 0


def _terminal_size() -> tuple[int, int]:
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
        return size.columns, size.lines
    except OSError:
        return 80, 24


def _pump_output(term: Any, stop: threading.Event) -> None:
    out = sys.stdout.buffer
    try:
        while not stop.is_set():
            data = term.recv()
            if not data:
                break
            out.write(data)
            out.flush()
    except SandboxIDEError as exc:
        sys.stderr.write(f"\r\nsandbox-ide: {exc.message}\r\n")
    finally:
        stop.set()


def _pump_input(term: Any, fd: int, stop: threading.Event, resized: threading.Event) -> None:
    import select

    while not stop.is_set():
        if resized.is_set():
            resized.clear()
            term.resize(*_terminal_size())
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            continue
        data = os.read(fd, 4096)
        if not data:  # stdin closed: end the session like `docker exec -i`
            with contextlib.suppress(SandboxIDEError, OSError):
                term.send(b"\x04")
            stop.wait(5)
            break
        try:
            term.send(data)
        except Exception:  # noqa: BLE001 - the connection is gone; the reader reports why
            break


# -- cp ---------------------------------------------------------------------------------------


def _split_remote(spec: str) -> tuple[str, str] | None:
    name, sep, path = spec.partition(":")
    if sep and name and "/" not in name and not os.path.exists(spec):
        return name, path or "."
    return None


def cmd_cp(args: argparse.Namespace) -> int:
    src, dst = _split_remote(args.source), _split_remote(args.destination)
    if bool(src) == bool(dst):
        raise InvalidRequestError(
            "Name the sandbox on exactly one side: cp LOCAL NAME:/path or cp NAME:/path LOCAL."
        )
    show = args.progress if args.progress is not None else (not args.quiet and sys.stderr.isatty())
    if dst:
        name, remote = dst
        local = Path(args.source)
        if not local.exists():
            raise FileNotFoundError(f"No such local file or folder: {local}")
        with _open(args, name) as sb, _progress(local.name, show) as progress:
            into_dir = remote.endswith("/") or sb.files.is_dir(remote)
            if local.is_dir():
                if into_dir:
                    sb.files.upload(local, remote.rstrip("/") or "/", progress=progress)
                else:  # the folder becomes `remote`
                    sb.files.mkdir(remote)
                    for child in sorted(local.iterdir()):
                        sb.files.upload(child, remote, progress=progress)
            else:
                target = posixpath.join(remote, local.name) if into_dir else remote
                with local.open("rb") as handle:
                    sb.files.write(target, handle, progress=progress)
        return 0
    name, remote = src or ("", "")
    local = Path(args.destination)
    if local.is_dir():
        local = local / (posixpath.basename(remote.rstrip("/")) or "root")
    with _open(args, name) as sb, _progress(posixpath.basename(remote), show) as progress:
        try:
            sb.files.download(remote, local, progress=progress)
        except NotFoundError as exc:
            raise NotFoundError(f"{name}:{remote}: {exc.message}", code=exc.code) from exc
    return 0


@contextlib.contextmanager
def _progress(label: str, show: bool) -> Iterator[Any]:
    """A one-line stderr progress meter (bytes, rate, percent when the size is known)."""
    if not show:
        yield None
        return
    started = time.monotonic()
    last, done, total = 0.0, 0, None

    def draw(final: bool = False) -> None:
        elapsed = max(time.monotonic() - started, 1e-6)
        rate = f"{_size(done / elapsed)}/s"
        if total:
            width = 24
            filled = int(width * min(done / total, 1))
            bar = "#" * filled + "-" * (width - filled)
            line = f"{label} [{bar}] {done * 100 // total:3d}% {_size(done)}/{_size(total)} {rate}"
        else:
            line = f"{label} {_size(done)} {rate}"
        sys.stderr.write("\r" + line[:120].ljust(60) + ("\n" if final else ""))
        sys.stderr.flush()

    def progress(bytes_done: int, bytes_total: int | None) -> None:
        nonlocal last, done, total
        done, total = bytes_done, bytes_total
        now = time.monotonic()
        if now - last >= 0.1:
            last = now
            draw()

    try:
        yield progress
    finally:
        draw(final=True)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


# -- expose / rm --------------------------------------------------------------------------------


LEVELS = ("private", "course", "authenticated", "public")


def cmd_expose(args: argparse.Namespace) -> int:
    with _open(args, args.name) as sb:
        port = sb.ports.expose(
            args.port, name=args.label, visibility=args.visibility, expires_in=args.expires
        )
    print(port.url)
    return 0


def cmd_mcp(args: argparse.Namespace) -> int:
    """stdout carries the protocol: everything else goes to stderr."""
    try:
        from .mcp.stdio import main as serve_mcp
    except ImportError:
        print(
            "sandbox-ide: the MCP server needs the mcp package: pip install 'sandbox-ide-sdk[mcp]'",
            file=sys.stderr,
        )
        return 1
    serve_mcp(args.url, args.token)
    return 0


def cmd_share(args: argparse.Namespace) -> int:
    """Prints the short share link, then who can open it (and until when)."""
    with _open(args, args.name) as sb:
        port = sb.ports.share(args.port, args.visibility, expires_in=args.expires)
    print(port.share_url)
    until = f" Until {port.expires_at.isoformat()}." if port.expires_at else ""
    print(port.audience + until, file=sys.stderr)
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    status = 0
    for name in args.names:
        try:
            sb = _open(args, name)
        except NotFoundError as exc:
            print(f"sandbox-ide: {exc.message}", file=sys.stderr)
            status = 1
            continue
        sb.destroy()
        print(name)
    return status


def cmd_update_starter(args: argparse.Namespace) -> int:
    with _open(args, args.name) as sb:
        report = sb.update_starter()
    print(f"{args.name}\t{report.status}\t{report.head[:10]}")
    for path in report.updated:
        print(f"updated\t{path}")
    for path in report.restored:
        print(f"restored\t{path}")
    for conflict in report.conflicts:
        print(f"conflict\t{conflict.path}\tstarter's version: {conflict.kept_as or '-'}")
    return 0


def cmd_fork(args: argparse.Namespace) -> int:
    with _open(args, args.name) as sb:
        result = sb.fork(args.count)
    for copy in result.sandboxes:
        with copy:
            print(f"{copy.name}\t{copy.id}\t{copy.status}")
    for error in result.errors:
        print(f"sandbox-ide: fork {error.index}: {error.message} ({error.code})", file=sys.stderr)
    return 1 if result.errors else 0


def cmd_restore(args: argparse.Namespace) -> int:
    with _open(args, args.name) as sb:
        info = sb.restore(args.snapshot)
    print(f"{info.name}\t{info.id}\t{info.status}\trestored from {args.snapshot}")
    return 0


def cmd_snapshot_create(args: argparse.Namespace) -> int:
    with _open(args, args.sandbox) as sb:
        snap = sb.snapshot(args.name)
    print(f"{snap.name}\t{snap.id}\t{_size(snap.size_bytes)}\tpaused {snap.paused_ms:.0f} ms")
    return 0


def cmd_snapshot_list(args: argparse.Namespace) -> int:
    if args.sandbox:
        with _open(args, args.sandbox) as sb:
            snapshots = sb.snapshots()
    else:
        snapshots = Sandbox.list_snapshots(url=args.url, token=args.token)
    if args.json:
        rows = [
            {
                "id": s.id,
                "name": s.name,
                "sandbox": s.sandbox,
                "size_bytes": s.size_bytes,
                "created_at": str(s.created_at),
                "paused_ms": s.paused_ms,
            }
            for s in snapshots
        ]
        print(json.dumps(rows, indent=2))
        return 0
    table = [("NAME", "ID", "SANDBOX", "SIZE", "CREATED")]
    for s in snapshots:
        table.append((s.name, s.id, s.sandbox, _size(s.size_bytes), _when(s.created_at)))
    _table(table)
    return 0


def cmd_snapshot_rm(args: argparse.Namespace) -> int:
    status = 0
    for snapshot_id in args.ids:
        try:
            Sandbox.delete_snapshot(snapshot_id, url=args.url, token=args.token)
        except NotFoundError as exc:
            print(f"sandbox-ide: {exc.message}", file=sys.stderr)
            status = 1
            continue
        print(snapshot_id)
    return status


# -- templates and courses ------------------------------------------------------------------


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else ""


def _template(args: argparse.Namespace, ref: str) -> Template:
    return Template.from_name(ref, url=args.url, token=args.token)


def _course(args: argparse.Namespace, ref: str) -> Course:
    return Course.from_name(ref, url=args.url, token=args.token)


def _read_dockerfile(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise InvalidRequestError(
            f"Cannot read the Dockerfile {path}: {exc.strerror}.", code="invalid_dockerfile"
        ) from None


def _build(template: Template) -> int:
    """Build the template's Dockerfile with its log on stdout (1 when it fails)."""
    build = template.build(on_log=lambda text: print(text, end="", flush=True))
    if build.ok:
        return 0
    print(f"sandbox-ide: {build.error}", file=sys.stderr)
    return 1


def cmd_template_build(args: argparse.Namespace) -> int:
    with _template(args, args.template) as template:
        return _build(template)


def cmd_template_create(args: argparse.Namespace) -> int:
    dockerfile = _read_dockerfile(args.dockerfile)
    with Template.create(
        args.name,
        files=args.files or None,
        description=args.description,
        image=args.image,
        repo_url=args.repo_url,
        repo_branch=args.repo_branch,
        setup_command=args.setup_command,
        dockerfile=dockerfile,
        env=_env(args.env),
        open_files=args.open_files,
        preview_port=args.preview_port,
        warm_pool=args.warm_pool,
        message=args.message,
        url=args.url,
        token=args.token,
    ) as template:
        status = _build(template) if dockerfile else 0
        print(f"{template.name}\t{template.id}\t{template.info.starter_head[:10]}")
    return status


def cmd_template_list(args: argparse.Namespace) -> int:
    templates = Template.list(url=args.url, token=args.token)
    if args.json:
        rows = [
            {
                "id": t.id,
                "name": t.name,
                "repo_url": t.repo_url,
                "starter_head": t.starter_head,
                "updated_at": str(t.updated_at),
            }
            for t in templates
        ]
        print(json.dumps(rows, indent=2))
        return 0
    table = [("NAME", "ID", "STARTER", "SOURCE", "UPDATED")]
    for t in templates:
        source = t.repo_url or "files"
        table.append((t.name, t.id, t.starter_head[:10], source, _when(t.updated_at)))
    _table(table)
    return 0


def cmd_template_upload(args: argparse.Namespace) -> int:
    with _template(args, args.template) as template:
        info = template.upload(args.paths, message=args.message)
    print(f"{info.name}\t{info.id}\t{info.starter_head[:10]}")
    return 0


def cmd_template_refresh(args: argparse.Namespace) -> int:
    with _template(args, args.template) as template:
        info = template.refresh_repo()
    print(f"{info.name}\t{info.id}\t{info.starter_head[:10]}")
    return 0


def cmd_template_rm(args: argparse.Namespace) -> int:
    status = 0
    for ref in args.templates:
        try:
            _template(args, ref).delete()
        except SandboxIDEError as exc:
            print(f"sandbox-ide: {ref}: {exc.message}", file=sys.stderr)
            status = 1
            continue
        print(ref)
    return status


def cmd_course_create(args: argparse.Namespace) -> int:
    with _template(args, args.template) as template:
        course = Course.create(args.name, template, url=args.url, token=args.token)
    with course:
        print(f"{course.name}\t{course.id}\t{template.name}")
    return 0


def cmd_course_list(args: argparse.Namespace) -> int:
    courses = Course.list(url=args.url, token=args.token)
    if args.json:
        rows = [
            {
                "id": c.id,
                "name": c.name,
                "role": c.role,
                "teacher": c.teacher,
                "template": c.template_id,
            }
            for c in courses
        ]
        print(json.dumps(rows, indent=2))
        return 0
    table = [("NAME", "ID", "ROLE", "TEACHER", "TEMPLATE")]
    table += [(c.name, c.id, c.role, c.teacher, c.template_name) for c in courses]
    _table(table)
    return 0


def cmd_course_invite(args: argparse.Namespace) -> int:
    with _course(args, args.course) as course:
        invite = course.invite(days=args.days)
    print(invite.url)
    return 0


def cmd_course_join(args: argparse.Namespace) -> int:
    with Course.join(args.invite, url=args.url, token=args.token) as sb:
        state = "joined" if sb.joined is not None and sb.joined.created else "exists"
        print(f"{sb.name}\t{sb.id}\t{sb.status}\t{state}")
    return 0


def cmd_course_roster(args: argparse.Namespace) -> int:
    with _course(args, args.course) as course:
        students = course.roster()
    if args.json:
        rows = [
            {
                "id": s.id,
                "username": s.username,
                "sandbox": s.sandbox_id,
                "status": s.status,
                "last_active_at": str(s.last_active_at),
                "starter_head": s.starter_head,
                "last_update": s.last_update.status if s.last_update else None,
            }
            for s in students
        ]
        print(json.dumps(rows, indent=2))
        return 0
    table = [("STUDENT", "ID", "SANDBOX", "STATUS", "LAST ACTIVE", "STARTER", "LAST UPDATE")]
    for s in students:
        update = ""
        if s.last_update is not None:
            update = s.last_update.status
            if s.last_update.conflicts:
                update += f" ({len(s.last_update.conflicts)} conflicts)"
        table.append(
            (
                s.username,
                str(s.id),
                s.sandbox_id or "-",
                s.status or "-",
                _when(s.last_active_at),
                s.starter_head[:10],
                update,
            )
        )
    _table(table)
    return 0


def cmd_course_progress(args: argparse.Namespace) -> int:
    with _course(args, args.course) as course:
        if args.csv:
            sys.stdout.write(course.progress_csv())
            return 0
        data = course.progress()
    table = [("STUDENT", "STEP", "LAST CHECK", "CHECKS")]
    for row in data["students"]:
        step = "-" if row["current"] is None else f"{row['current']}/{data['total']}"
        if row["finished"]:
            step = "finished"
        last = row["last_check"]
        check = f"step {last['step']} {'passed' if last['passed'] else 'failed'}" if last else "-"
        table.append((row["student"]["username"], step, check, str(row["checks"])))
    print(data["title"])
    _table(table)
    return 0


def cmd_template_validate(args: argparse.Namespace) -> int:
    with _template(args, args.template) as template:
        report = template.validate_tutorial()
    for problem in report.problems:
        where = problem["file"] + (f":{problem['line']}" if problem["line"] else "")
        print(f"{where}: {problem['level']}: {problem['message']}")
    for what in report.unsupported:
        print(f"not available here: {what}")
    if report.found:
        state = "valid" if report.valid else "invalid"
        print(f"{report.title or '(untitled)'}: {report.steps} steps, {state}")
    return 0 if report.valid else 1


def cmd_tutorial_show(args: argparse.Namespace) -> int:
    with _open(args, args.name) as sb:
        if args.step is not None:
            page = sb.tutorial.step(args.step)
            print(f"# {page.title}\n\n{page.markdown}")
            return 0
        info = sb.tutorial.get()
    print(info.title + (" (finished)" if info.finished else ""))
    for step in info.steps:
        mark = "x" if step.done else (">" if step.index == info.current else " ")
        print(f"[{mark}] {step.index}. {step.title}")
    for what in info.unsupported:
        print(f"not available here: {what}")
    return 0


def cmd_tutorial_check(args: argparse.Namespace) -> int:
    with _open(args, args.name) as sb:
        result = sb.tutorial.check()
    if result.output:
        print(result.output.rstrip())
    state = "passed" if result.passed else "not done yet"
    print(f"step {result.step} {state}; now at step {result.current}")
    return 0 if result.passed else 1


def cmd_course_update(args: argparse.Namespace) -> int:
    with _course(args, args.course) as course:
        report = course.push_update()
    table = [("STUDENT", "RESULT", "UPDATED", "CONFLICTS")]
    failed = False
    for r in report.students:
        failed = failed or not r.ok
        conflicts = ", ".join(c.path for c in r.conflicts) or "-"
        result = r.status if r.ok else f"{r.status}: {r.error}"
        table.append((r.student, result, str(len(r.updated)), conflicts))
    print(f"starter {report.starter_head[:10]}")
    _table(table)
    return 1 if failed else 0


def cmd_course_reset(args: argparse.Namespace) -> int:
    with _course(args, args.course) as course:
        archive = course.reset(args.student)
        saved = course.download_archive(archive, args.output) if args.output else None
    print(f"{args.student}\tarchive {archive.id}\t{archive.size} bytes")
    if saved is not None:
        print(saved)
    return 0


def cmd_course_rm(args: argparse.Namespace) -> int:
    _course(args, args.course).delete()
    print(args.course)
    return 0


if __name__ == "__main__":
    sys.exit(main())
