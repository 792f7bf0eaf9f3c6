"""Who the agent is, and who the programs it starts are.

The agent starts as root inside the container (whose capabilities are cut to
SETUID, SETGID and SETPCAP) and, once it listens, keeps root as its *real and saved*
uid while taking the sandbox user's uid as its *effective* one:

- Linux lets a process signal another only if its real or effective uid equals the
  target's real or saved uid, and trace (or read ``/proc/PID/environ``, ``mem``)
  only if its uid equals all of the target's. The sandbox user's programs (every uid
  1000) therefore cannot stop, pause, kill or trace the agent (real and saved uid 0),
  and the kernel marks the agent non-dumpable when its effective uid changes.
- With an effective uid of 1000 every file the agent opens, creates or deletes is
  subject to the sandbox user's permissions and owned by them, exactly as before:
  the files API cannot reach anything the user could not, and its effective
  capability set is empty.
- Every program it starts must become uid 1000 entirely (real, effective, saved),
  or it could take uid 0 back. ``install_child_identity`` makes ``subprocess.Popen``
  (which asyncio, GitPython and ``subprocess.run`` all use) start every program
  through ``sandbox-as-user`` (as_user.c, built into the image), which calls
  ``setreuid(1000, 1000)`` - no privilege needed, and the kernel then clears all
  capabilities because none of the uids is 0 any more - and execs the program. A
  small static helper rather than Popen's own ``user=``: that makes CPython fork
  instead of vfork, and the exec from a forked copy of the agent costs 1-1.5 ms more.
  Where the helper cannot take the uid (gVisor), a check at start falls back to it.
- Before that it empties the capability bounding set that every program inherits,
  and after it its own permitted set: nothing it starts can ever hold a
  capability, and the agent keeps none it does not need (it needs none once it
  listens: the children's ``setreuid`` and signals to uid 1000 are unprivileged).

A separate agent uid with ambient capabilities was rejected: capabilities survive a
change between two non-zero uids, so every child would have to drop them by hand.
"""

from __future__ import annotations

import ctypes
import logging
import os
import pwd
import subprocess
from typing import Any

AS_USER = "/usr/local/libexec/sandbox-as-user"

log = logging.getLogger("sandbox_agent")

_PR_CAPBSET_DROP = 24
_CAP_VERSION_3 = 0x20080522

_sandbox_uid: int | None = None
_BasePopen = subprocess.Popen
# Whether sandbox-as-user works here: gVisor gives an exec'd program real, effective
# and saved uid 0 when its real uid was 0, so the helper cannot take uid 1000 there,
# and programs start CPython's way (Popen's user=, which changes the uid before exec).
_through_helper = True


def parse_user(name: str) -> tuple[int, int]:
    """uid and gid of ``name`` (a user name or a number)."""
    if name.isdigit():
        uid = int(name)
        try:
            return uid, pwd.getpwuid(uid).pw_gid
        except KeyError:
            return uid, uid
    entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


class _SandboxUserPopen(subprocess.Popen):  # type: ignore[type-arg]
    """Popen whose children run as the sandbox user unless told otherwise."""

    def __init__(self, args: Any, *more: Any, **kwargs: Any) -> None:
        uid = _sandbox_uid
        if uid is not None and kwargs.get("user") is None:
            if more or kwargs.get("preexec_fn") is not None or not _through_helper:
                kwargs["user"] = uid  # CPython's own (slower) way
            else:
                args = through_as_user(uid, args, kwargs)
        super().__init__(args, *more, **kwargs)


def through_as_user(uid: int, args: Any, kwargs: dict[str, Any]) -> list[str]:
    """The argv that runs ``args`` (as Popen takes them) as ``uid`` through AS_USER;
    ``kwargs`` lose ``shell`` and ``executable``. A program that cannot be found or
    run raises here what CPython would raise from the child."""
    given = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args)
    argv: list[str] = [os.fsdecode(a) for a in given]
    if kwargs.pop("shell", False):
        argv = ["/bin/sh", "-c", *argv]
    executable = kwargs.pop("executable", None)
    program = os.fsdecode(executable) if executable is not None else argv[0]
    path = resolve_program(program, kwargs.get("env"), kwargs.get("cwd"))
    return [AS_USER, str(uid), path, *argv]


def resolve_program(program: str, env: Any, cwd: Any) -> str:
    """``program``'s path as execvp would find it, checked with the effective uid."""
    if "/" in program:
        candidates = [os.path.join(os.fsdecode(cwd), program) if cwd else program]
    else:
        candidates = [os.path.join(d, program) for d in os.get_exec_path(env)]
    denied = False
    for candidate in candidates:
        if os.path.isfile(candidate):
            if os.access(candidate, os.X_OK, effective_ids=True):
                return program if "/" in program else candidate
            denied = True
        elif os.path.isdir(candidate) and "/" in program:
            denied = True
    if denied:
        raise PermissionError(13, os.strerror(13), program)
    raise FileNotFoundError(2, os.strerror(2), program)


def install_child_identity() -> None:
    """Make every later ``subprocess.Popen`` start its child as the sandbox user.

    Called before the modules that spawn (and GitPython, which binds ``Popen`` when it
    is imported) are loaded, so that no spawn path can forget it.
    """
    subprocess.Popen = _SandboxUserPopen  # type: ignore[misc]


def become_agent(user: str) -> None:
    """Drop to the sandbox user's effective uid and gid, keeping root as real and
    saved uid (see the module docstring). A no-op when not started as root."""
    global _sandbox_uid
    if os.getuid() != 0:
        return
    uid, gid = parse_user(user)
    libc = ctypes.CDLL(None, use_errno=True)
    _empty_bounding_set(libc)
    os.setgroups([gid])
    os.setresgid(gid, gid, gid)
    os.setresuid(0, uid, 0)
    _drop_permitted(libc)
    _sandbox_uid = uid
    _check_helper(uid)


def _check_helper(uid: int) -> None:
    """Use sandbox-as-user only where a program it starts really runs as ``uid``."""
    global _through_helper
    try:
        probe = _BasePopen(
            [AS_USER, str(uid), "/usr/bin/id", "id", "-ru"],  # the real uid, the one at risk
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        out, _ = probe.communicate(timeout=10)
    except (OSError, subprocess.SubprocessError):
        out = b""
    _through_helper = out.strip() == str(uid).encode()
    if not _through_helper:
        log.warning("sandbox-as-user cannot take uid %s here; programs start through fork", uid)


def _empty_bounding_set(libc: ctypes.CDLL) -> None:
    """No program started from here on can ever gain a capability (needs SETPCAP)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
    except (OSError, ValueError):
        last = 40
    failed = [cap for cap in range(last + 1) if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0]
    if failed:
        log.warning("could not drop capabilities %s from the bounding set", failed)


def _drop_permitted(libc: ctypes.CDLL) -> None:
    """capset(2) with every set empty: the agent keeps no capability at all."""
    header = (ctypes.c_uint32 * 2)(_CAP_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    if libc.capset(ctypes.byref(header), ctypes.byref(data)) != 0:
        log.warning("could not drop the agent's capabilities: errno %d", ctypes.get_errno())


def sandbox_uid() -> int | None:
    """The uid programs run as when the agent dropped to it, else None."""
    return _sandbox_uid
