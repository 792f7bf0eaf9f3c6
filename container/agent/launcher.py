"""Programs start as the sandbox user without forking the agent on the hot path.

Every program must become uid 1000 wholly (``identity``), and CPython forks instead
of using vfork whenever ``Popen`` changes a uid: copying the agent's page tables for
each exec cost more than the rest of the exec (about 1-3 ms against a 4-8 ms exec).
So the agent keeps a few *launchers*: forks of itself made ahead of time, in idle
moments, each waiting on a socket for one program to become. Starting a program
hands it the argv, environment, working directory and standard streams (passed as
file descriptors); it sets up its session and descriptors, takes uid 1000 and execs.
A launcher is the agent's own child, so its exit is reaped as any other; it has the
agent's credentials until it execs (real and saved uid 0), so the sandbox's code can
neither signal nor trace it either.

``LaunchingPopen._execute_child`` uses a launcher when the call is the plain kind
the agent makes (no preexec_fn, no pass_fds, no gid/groups/umask/process group
change, from the event loop's thread) and one is ready; otherwise CPython's own
path runs. ``tests/unit/test_launcher.py`` fails if CPython's ``_execute_child``
changes the parameters this relies on.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import marshal
import os
import signal
import socket
import subprocess
import sys
import threading
from typing import Any, NoReturn

POOL_SIZE = 2
_MAX_SPEC = 128 * 1024  # larger argv/env go CPython's way (a socket buffer's size)
_SPEC_VERSION = 1


class Launcher:
    """A forked copy of the agent waiting for one program to become."""

    def __init__(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the forked launcher
            parent.close()
            _wait_and_exec(child)
        child.close()
        self.pid = pid
        self.sock = parent

    def start(self, spec: bytes, fds: list[int]) -> bytes:
        """Hand over the program; b"" once it runs, else the launcher's error report."""
        socket.send_fds(self.sock, [spec], fds)
        report = self.sock.recv(4096)
        self.sock.close()
        return report

    def discard(self) -> None:
        self.sock.close()  # the launcher sees the end of its socket and exits
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


class _Pool:
    def __init__(self) -> None:
        self.ready: list[Launcher] = []
        self.uid: int | None = None
        self._filling = False

    def enable(self, uid: int) -> None:
        self.uid = uid
        self.fill_soon()

    def take(self) -> Launcher | None:
        if self.uid is None or threading.current_thread() is not threading.main_thread():
            return None
        launcher = self.ready.pop() if self.ready else None
        self.fill_soon()
        return launcher

    def fill_soon(self) -> None:
        """Fork new launchers a moment later, off the path of the program starting."""
        if self._filling:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._filling = True
        loop.call_later(0.005, self._fill)

    def _fill(self) -> None:
        self._filling = False
        try:
            while len(self.ready) < POOL_SIZE:
                self.ready.append(Launcher())
        except OSError:  # the sandbox's process limit: programs start CPython's way
            pass


POOL = _Pool()


class LaunchingPopen(subprocess.Popen):  # type: ignore[type-arg]
    """Popen that starts sandbox-user programs through a ready launcher."""

    def _execute_child(  # noqa: PLR0913 - CPython's own signature
        self,
        args: Any,
        executable: Any,
        preexec_fn: Any,
        close_fds: bool,
        pass_fds: Any,
        cwd: Any,
        env: Any,
        startupinfo: Any,
        creationflags: int,
        shell: bool,
        p2cread: int,
        p2cwrite: int,
        c2pread: int,
        c2pwrite: int,
        errread: int,
        errwrite: int,
        restore_signals: bool,
        gid: Any,
        gids: Any,
        uid: Any,
        umask: int,
        start_new_session: bool,
        process_group: int,
    ) -> None:
        everything = (
            args, executable, preexec_fn, close_fds, pass_fds, cwd, env, startupinfo,
            creationflags, shell, p2cread, p2cwrite, c2pread, c2pwrite, errread,
            errwrite, restore_signals, gid, gids, uid, umask, start_new_session,
            process_group,
        )  # fmt: skip
        plain = (
            uid is not None
            and uid == POOL.uid
            and preexec_fn is None
            and not pass_fds
            and close_fds
            and gid is None
            and gids is None
            and umask < 0
            and process_group == -1
        )
        launcher = POOL.take() if plain else None
        if launcher is None:
            super()._execute_child(*everything)  # type: ignore[misc]
            return
        argv, executable = _argv(args, executable, shell)
        sys.audit("subprocess.Popen", executable, argv, cwd, env)
        spec = marshal.dumps(
            (
                _SPEC_VERSION,
                [os.fsencode(a) for a in argv],
                _executables(executable, env),
                None if cwd is None else os.fsencode(cwd),
                None if env is None else [_env_item(k, v) for k, v in env.items()],
                [p2cread, c2pwrite, errwrite],
                restore_signals,
                start_new_session,
                uid,
            )
        )
        fds = [fd for fd in (p2cread, c2pwrite, errwrite) if fd != -1]
        if len(spec) > _MAX_SPEC:
            launcher.discard()
            super()._execute_child(*everything)  # type: ignore[misc]
            return
        try:
            report = launcher.start(spec, fds)
        except OSError:
            launcher.discard()
            super()._execute_child(*everything)  # type: ignore[misc]
            return
        self.pid = launcher.pid
        self._child_created = True
        self._close_pipe_fds(p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite)  # type: ignore[attr-defined]
        if report:
            self._failed(report, executable, cwd)

    def _failed(self, report: bytes, executable: Any, cwd: Any) -> NoReturn:
        """Raise what CPython raises when its child could not exec."""
        with contextlib.suppress(ChildProcessError):
            _, status = os.waitpid(self.pid, 0)
            self._handle_exitstatus(status)  # type: ignore[attr-defined]
        name, _, rest = report.partition(b":")
        number, _, where = rest.partition(b":")
        kind = getattr(builtins, name.decode("ascii", "replace"), OSError)
        if not (isinstance(kind, type) and issubclass(kind, OSError)):
            kind = OSError
        errno_num = int(number or b"0")
        filename = cwd if where == b"chdir" else executable
        raise kind(errno_num, os.strerror(errno_num), filename)


def _argv(args: Any, executable: Any, shell: bool) -> tuple[list[Any], Any]:
    argv = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args)
    if shell:
        argv = ["/bin/sh", "-c", *argv]
        if executable:
            argv[0] = executable
    return argv, argv[0] if executable is None else executable


def _executables(executable: Any, env: Any) -> list[bytes]:
    name = os.fsencode(executable)
    if os.path.dirname(name):
        return [name]
    return [os.path.join(os.fsencode(d), name) for d in os.get_exec_path(env)]


def _env_item(key: Any, value: Any) -> bytes:
    name = os.fsencode(key)
    if b"=" in name:
        raise ValueError("illegal environment variable name")
    return name + b"=" + os.fsencode(value)


def _wait_and_exec(sock: socket.socket) -> NoReturn:  # pragma: no cover - in the launcher
    """The launcher's whole life: wait for a program, become it, or report why not."""
    where = b"exec"
    try:
        keep = sock.fileno()
        os.closerange(3, keep)
        os.closerange(keep + 1, 1 << 20)  # nothing of the agent's but 0-2 and the socket
        sock.setblocking(True)
        message, fds, _, _ = socket.recv_fds(sock, _MAX_SPEC, 3)
        if not message:
            os._exit(0)
        # written by the agent this launcher was forked from
        spec = marshal.loads(message)  # noqa: S302
        version, argv, executables, cwd, env, wanted, restore, new_session, uid = spec
        if version != _SPEC_VERSION:
            os._exit(0)
        given = iter(fds)
        sources = [next(given) if fd != -1 else target for target, fd in enumerate(wanted)]
        for target, source in enumerate(sources):
            if source != target:
                os.dup2(source, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        if restore:
            for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ"):
                if hasattr(signal, name):
                    signal.signal(getattr(signal, name), signal.SIG_DFL)
        if new_session:
            os.setsid()
        if cwd is not None:
            where = b"chdir"
            os.chdir(cwd)
            where = b"exec"
        os.setreuid(uid, uid)
        environment = None if env is None else dict(item.split(b"=", 1) for item in env)
        error: OSError | None = None
        for path in executables:
            try:
                if environment is None:
                    os.execv(path, argv)  # noqa: S606 - the program asked for
                os.execve(path, argv, environment)  # noqa: S606
            except OSError as exc:
                if error is None or exc.errno not in (2, 20):  # ENOENT, ENOTDIR
                    error = exc
        raise error or FileNotFoundError(2, "No such file or directory")
    except OSError as exc:
        report = f"{type(exc).__name__}:{exc.errno or 0}:".encode() + where
    except BaseException as exc:  # noqa: BLE001 - reported, never raised in the agent's copy
        report = f"SubprocessError:0:{type(exc).__name__}".encode()
    with contextlib.suppress(OSError):
        sock.send(report)
    os._exit(255)
