"""Code interpreter contexts: persistent Python and JavaScript interpreters.

A *context* is one long-lived interpreter whose state (variables, imports, functions)
persists between runs. Python contexts are real Jupyter kernels (ipykernel, driven
with jupyter_client over unix sockets, so they open no TCP port); JavaScript contexts
are a Node.js process running ``js_kernel.js``, a small REPL server. Results come back
as Jupyter-style MIME bundles.

Interpreters start lazily (the agent itself never imports jupyter_client at start-up):
a context made with ``CodeContextCreate`` starts its interpreter in the background at
once, the default context of a language starts on its first run. Once Python was used,
one spare kernel is kept started (``SparePython``) so that the next Python context is
ready at once instead of after the kernel's 1-2 s start. A timeout interrupts
the running code (SIGINT) and keeps the context's state; an interpreter that dies is
reported and replaced by a fresh one on the next run.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import re
import secrets
import shutil
import signal
import sys
import time
from datetime import UTC, datetime
from typing import Any, Protocol

from . import procs
from .dispatch import on, table
from .failures import AgentFailure
from .paths import WORKSPACE, resolve_path, working_directory
from .protocol import (
    CHUNK,
    MAX_FRAME,
    Channel,
    CodeContextCreate,
    CodeContextDelete,
    CodeContextInfo,
    CodeContextList,
    CodeContexts,
    CodeResult,
    CodeRun,
    CodeRunEnd,
    CodeRunError,
    CodeRunStarted,
    Kind,
    Message,
)

LANGUAGES = ("python", "javascript")
DEFAULT_IDS = {language: f"default-{language}" for language in LANGUAGES}
# Connection files and the kernels' unix sockets (private to the sandbox user).
RUNTIME_DIR = os.environ.get("SANDBOX_AGENT_KERNEL_DIR", "/tmp/.sandbox-kernels")  # noqa: S108
JS_KERNEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "js_kernel.js")
KERNEL_TUNING = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernel_tuning.py")
KERNEL_LAUNCHER = f"{__package__}.kernel_launcher"
START_TIMEOUT = 60.0
# After an interrupt, how long the code may take to stop before the interpreter is
# replaced (state lost).
INTERRUPT_GRACE = 3.0
# How often a run that waits for output checks that its interpreter still lives.
LIVENESS_POLL = 0.5
# Contexts a sandbox may hold at once besides the default ones (each is a process of
# 40-70 MB; the sandbox's memory limit applies to all of them together).
MAX_CONTEXTS = int(os.environ.get("SANDBOX_AGENT_MAX_CONTEXTS", "16"))
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_MAX_RESULT = MAX_FRAME - 64 * 1024


class Died(Exception):
    """The interpreter process ended while it ran code."""


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _encoded_size(data: dict[str, Any]) -> int:
    try:
        return len(json.dumps(data, separators=(",", ":")).encode()) + 256
    except (TypeError, ValueError):
        return MAX_FRAME  # not JSON: keep text/plain only


# ------------------------------------------------------------------------- output


class Sink:
    """Where one run's output goes: the client's connection, in the order produced.

    After the client has gone, output is dropped (the run is being interrupted).
    A timeout turns the interpreter's "interrupted" error into a ``TimeoutError``.
    """

    def __init__(self, channel: Channel | None) -> None:
        self.channel = channel
        self.gone = channel is None  # no channel: output is dropped
        self.timeout_message: str | None = None
        self.errors = 0

    async def _send(self, message: Message) -> None:
        if self.gone or self.channel is None:
            return
        try:
            await self.channel.send_message(message)
        except (ConnectionError, OSError):
            self.gone = True

    async def text(self, kind: int, text: str) -> None:
        if self.gone or self.channel is None or not text:
            return
        try:
            await self.channel.send_data(kind, text.encode("utf-8", "replace"))
        except (ConnectionError, OSError):
            self.gone = True

    async def stdout(self, text: str) -> None:
        await self.text(Kind.STDOUT, text)

    async def stderr(self, text: str) -> None:
        await self.text(Kind.STDERR, text)

    async def result(self, data: dict[str, Any], is_main_result: bool) -> None:
        data = dict(data)
        size = _encoded_size(data)
        while size > _MAX_RESULT and len(data) > 1:
            # Too large for one frame: drop the biggest representations, say so.
            biggest = max((k for k in data if k != "text/plain"), key=lambda k: len(str(data[k])))
            data.pop(biggest)
            await self.stderr(
                f"[a {biggest} output of {size // 1024} KiB was too large to return "
                f"(limit {_MAX_RESULT // 1024} KiB) and was left out]\n"
            )
            size = _encoded_size(data)
        if size > _MAX_RESULT:
            data = {"text/plain": str(data.get("text/plain", ""))[: _MAX_RESULT // 8]}
        await self._send(CodeResult(data=data, is_main_result=is_main_result))

    async def error(self, name: str, value: str, traceback: str) -> None:
        self.errors += 1
        if self.timeout_message is not None:
            name, value = "TimeoutError", self.timeout_message
        await self._send(CodeRunError(name=name, value=value, traceback=strip_ansi(traceback)))


# ------------------------------------------------------------------- interpreters


class Interpreter(Protocol):
    async def start(self) -> None: ...
    def alive(self) -> bool: ...
    async def run(self, code: str, sink: Sink) -> int | None: ...
    async def interrupt(self) -> None: ...
    async def stop(self) -> None: ...


_jupyter_import: asyncio.Future[Any] | None = None


async def _jupyter_manager() -> Any:
    """jupyter_client.manager, imported once, off the event loop (it takes ~0.5 s)."""
    global _jupyter_import
    if _jupyter_import is None:
        _jupyter_import = asyncio.ensure_future(
            asyncio.to_thread(importlib.import_module, "jupyter_client.manager")
        )
    try:
        return await asyncio.shield(_jupyter_import)
    except Exception:
        _jupyter_import = None
        raise


def _describe_exit(code: int | None, what: str) -> str:
    if code is None:
        return f"the {what} stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " - out of memory?" if name == "SIGKILL" else ""
        return f"the {what} was killed by {name}{hint}"
    return f"the {what} exited with code {code}"


class PythonKernel:
    """An ipykernel, started and driven with jupyter_client's asyncio API."""

    def __init__(self, cwd: str, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.env = env
        self.dir = os.path.join(RUNTIME_DIR, "py-" + secrets.token_hex(6))
        self.km: Any = None
        self.kc: Any = None

    async def start(self) -> None:
        manager = await _jupyter_manager()
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self.km = manager.AsyncKernelManager(
            kernel_name="python3",
            transport="ipc",
            ip=os.path.join(self.dir, "ipc"),
            connection_file=os.path.join(self.dir, "kernel.json"),
        )
        # ipykernel_launcher's command, without the debugger (kernel_launcher.py).
        self.km._kernel_spec = manager.kernelspec.KernelSpec(
            argv=[sys.executable, "-m", KERNEL_LAUNCHER, "-f", "{connection_file}"],
            display_name="Python 3",
            language="python",
            interrupt_mode="signal",
        )
        env = procs.child_env({})
        # Figures shown or left open at the end of a cell come back as image/png.
        env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
        env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
        env.update(self.env)
        await self.km.start_kernel(
            cwd=self.cwd,
            env=env,
            extra_arguments=[
                "--HistoryManager.enabled=False",
                "--InteractiveShell.colors=NoColor",
                "--InlineBackend.figure_formats=png",
                "--IPKernelApp.log_level=ERROR",  # its warnings only fill the container log
                # Fewer and quicker hand-offs to the kernel's I/O thread per run.
                f"--IPKernelApp.exec_lines=__import__('runpy').run_path({KERNEL_TUNING!r})",
            ],
        )
        self.kc = self.km.client()
        self.kc.start_channels()
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        """Until the kernel answers a kernel_info request and its iopub messages reach
        us (so that no output of the first run is lost). jupyter_client's own
        wait_for_ready then waits 0.2 s more for iopub to go quiet; this does not."""
        kc = self.kc
        deadline = time.monotonic() + START_TIMEOUT

        async def answered(get: Any, msg_id: str) -> None:
            while (await get())["parent_header"].get("msg_id") != msg_id:
                pass

        while time.monotonic() < deadline:
            if not self.alive():
                raise Died(_describe_exit(self._exit_code(), "Python kernel"))
            msg_id = kc.kernel_info()
            try:
                await asyncio.wait_for(
                    asyncio.gather(
                        answered(kc.get_shell_msg, msg_id), answered(kc.get_iopub_msg, msg_id)
                    ),
                    1.0,
                )
                return
            except TimeoutError:
                continue  # not listening yet, or iopub not subscribed yet: ask again
        raise Died(f"the Python kernel did not answer within {START_TIMEOUT:g} s")

    def alive(self) -> bool:
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        return process is not None and process.poll() is None

    def _exit_code(self) -> int | None:
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        return None if process is None else process.poll()

    async def run(self, code: str, sink: Sink, silent: bool = False) -> int | None:
        from queue import Empty

        kc = self.kc
        msg_id = kc.execute(
            code, silent=silent, store_history=not silent, allow_stdin=False, stop_on_error=False
        )
        count = None
        while True:
            try:
                msg = await kc.get_iopub_msg(timeout=LIVENESS_POLL)
            except Empty:
                if not self.alive():
                    raise Died(_describe_exit(self._exit_code(), "Python kernel")) from None
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue  # output of an earlier cell's leftovers (threads, callbacks)
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status":
                if content.get("execution_state") == "idle":
                    break
            elif kind == "stream":
                text = content.get("text", "")
                await (sink.stderr if content.get("name") == "stderr" else sink.stdout)(text)
            elif kind in ("execute_result", "display_data", "update_display_data"):
                await sink.result(content.get("data", {}), kind == "execute_result")
            elif kind == "error":
                await sink.error(
                    content.get("ename", "Error"),
                    content.get("evalue", ""),
                    "\n".join(content.get("traceback", [])),
                )
            elif kind == "execute_input":
                count = content.get("execution_count")
        # The execute_reply says nothing the iopub messages did not; keep its queue empty.
        with contextlib.suppress(Empty):
            while True:
                await kc.get_shell_msg(timeout=0)
        return count

    async def adopt(self, cwd: str, env: dict[str, str]) -> None:
        """Make a spare kernel (started in WORKSPACE, no extra env) the context's."""
        code = f"import os as _o\n_o.chdir({cwd!r})\n_o.environ.update({env!r})\ndel _o\n"
        self.cwd, self.env = cwd, dict(env)
        sink = Sink(None)
        await self.run(code, sink, silent=True)
        if sink.errors:
            raise Died("the spare kernel could not take the context's cwd and env")

    async def interrupt(self) -> None:
        if self.km is not None and self.alive():
            with contextlib.suppress(Exception):
                await self.km.interrupt_kernel()

    async def stop(self) -> None:
        if self.kc is not None:
            with contextlib.suppress(Exception):
                self.kc.stop_channels()
        if self.km is not None:
            with contextlib.suppress(Exception):
                await self.km.shutdown_kernel(now=True)
        shutil.rmtree(self.dir, ignore_errors=True)


class NodeKernel:
    """A Node.js process running js_kernel.js: requests on stdin, events on a pipe."""

    def __init__(self, cwd: str, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.env = env
        self.proc: procs.Child | None = None
        self.events: asyncio.StreamReader | None = None
        self.queue: asyncio.Queue[tuple[str, Any]] | None = None  # the running request's
        self.request_id = 0
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        read_fd, write_fd = os.pipe()
        try:
            transport, protocol = await loop.subprocess_exec(
                lambda: procs.ChildProtocol(loop),
                "node",
                "--expose-internals",
                "--no-warnings",
                JS_KERNEL,
                str(write_fd),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=self.cwd,
                env=procs.child_env(self.env),
                pass_fds=(write_fd,),
                start_new_session=True,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self.proc = procs.Child(transport, protocol, loop)
        events = self.events = asyncio.StreamReader(limit=8 * 1024 * 1024)
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(events),
            os.fdopen(read_fd, "rb", 0),
        )
        try:
            ready = await asyncio.wait_for(events.readline(), START_TIMEOUT)
        except TimeoutError:
            ready = b""
        if not ready:
            stderr = b""
            if self.proc.stderr is not None:
                with contextlib.suppress(TimeoutError):
                    stderr = await asyncio.wait_for(self.proc.stderr.read(4096), 1)
            await self.stop()
            raise Died(f"node did not start: {stderr.decode(errors='replace').strip()}")
        self.tasks = [
            asyncio.create_task(self._read_events(events)),
            asyncio.create_task(self._pump(self.proc.stdout, "stdout")),
            asyncio.create_task(self._pump(self.proc.stderr, "stderr")),
            asyncio.create_task(self._watch_exit(self.proc)),
        ]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def _deliver(self, item: tuple[str, Any]) -> None:
        if self.queue is not None:
            await self.queue.put(item)  # bounded: a slow client stops the reading

    async def _read_events(self, events: asyncio.StreamReader) -> None:
        while line := await events.readline():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("id") == self.request_id:
                await self._deliver(("event", event))

    async def _pump(self, stream: asyncio.StreamReader | None, name: str) -> None:
        """Output written to the real stdout/stderr (by child processes, for instance)."""
        if stream is None:
            return
        while chunk := await stream.read(CHUNK):
            await self._deliver((name, chunk.decode(errors="replace")))

    async def _watch_exit(self, proc: procs.Child) -> None:
        code = await proc.exited()
        await asyncio.sleep(0.05)  # let the last events arrive first
        await self._deliver(("died", code))

    async def run(self, code: str, sink: Sink) -> int | None:
        proc = self.proc
        if proc is None or proc.stdin is None:
            raise Died("the JavaScript interpreter is not running")
        self.request_id += 1
        self.queue = asyncio.Queue(maxsize=64)
        try:
            line = json.dumps({"id": self.request_id, "code": code}) + "\n"
            try:
                proc.stdin.write(line.encode())
                await proc.stdin.drain()
            except (ConnectionError, BrokenPipeError):
                raise Died(_describe_exit(proc.returncode, "JavaScript interpreter")) from None
            while True:
                kind, item = await self.queue.get()
                if kind == "died":
                    raise Died(_describe_exit(item, "JavaScript interpreter"))
                if kind in ("stdout", "stderr"):
                    await (sink.stdout if kind == "stdout" else sink.stderr)(item)
                    continue
                event = item
                if event["type"] == "stdout":
                    await sink.stdout(event.get("data", ""))
                elif event["type"] == "stderr":
                    await sink.stderr(event.get("data", ""))
                elif event["type"] == "result":
                    await sink.result(event.get("data", {}), True)
                elif event["type"] == "error":
                    await sink.error(
                        event.get("name", "Error"),
                        event.get("value", ""),
                        event.get("traceback", ""),
                    )
                elif event["type"] == "end":
                    return self.request_id
        finally:
            self.queue = None

    async def interrupt(self) -> None:
        if self.proc is not None and self.alive():
            procs.kill_group(self.proc.pid, signal.SIGINT)

    async def stop(self) -> None:
        if self.proc is not None:
            procs.kill_group(self.proc.pid)
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        for task in self.tasks:
            task.cancel()
        if self.proc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.proc.exited(), 5)
            if self.proc.stdin is not None:
                self.proc.stdin.close()


# ------------------------------------------------------------------------ contexts


class Context:
    def __init__(self, context_id: str, language: str, cwd: str, env: dict[str, str]) -> None:
        self.id = context_id
        self.language = language
        self.cwd = cwd
        self.env = env
        self.created_at = datetime.now(UTC).isoformat()
        self.interpreter: Interpreter | None = None
        self.starting: asyncio.Task[Interpreter] | None = None
        self.lock = asyncio.Lock()
        self.busy = False
        self.deleted = False
        self.running: Sink | None = None  # the sink of the run in progress

    def info(self) -> CodeContextInfo:
        if self.busy:
            status = "busy"
        elif self.starting is not None and not self.starting.done():
            status = "starting"
        elif self.interpreter is not None and self.interpreter.alive():
            status = "idle"
        else:
            status = "stopped"  # starts on the next run
        return CodeContextInfo(
            id=self.id,
            language=self.language,
            cwd=self.cwd,
            status=status,
            created_at=self.created_at,
        )

    def prewarm(self) -> None:
        if self.starting is None and self.interpreter is None:
            self.starting = asyncio.create_task(self._start())
            self.starting.add_done_callback(_observe)

    async def _start(self) -> Interpreter:
        interpreter: Interpreter
        spare = await SPARE.take(self.env) if self.language == "python" else None
        if spare is not None:
            interpreter = spare
            try:
                await spare.adopt(self.cwd, self.env)
            except BaseException:
                await spare.stop()
                raise
        else:
            if self.language == "python":
                interpreter = PythonKernel(self.cwd, self.env)
            else:
                interpreter = NodeKernel(self.cwd, self.env)
            try:
                await interpreter.start()
            except BaseException:
                await interpreter.stop()
                raise
        if self.language == "python":
            SPARE.schedule()
        if self.deleted:
            await interpreter.stop()
            raise Died("the context was deleted")
        self.interpreter = interpreter
        return interpreter

    async def ensure_started(self) -> Interpreter:
        if self.interpreter is not None and self.interpreter.alive():
            return self.interpreter
        if self.interpreter is not None:  # it died since: replace it
            old, self.interpreter = self.interpreter, None
            await old.stop()
        if self.starting is None or self.starting.done():
            self.starting = asyncio.create_task(self._start())
            self.starting.add_done_callback(_observe)
        starting = self.starting
        try:
            return await asyncio.shield(starting)
        finally:
            failed = starting.done() and (starting.cancelled() or starting.exception())
            if failed and self.starting is starting:
                self.starting = None  # the next run tries again

    async def discard_interpreter(self) -> None:
        old, self.interpreter, self.starting = self.interpreter, None, None
        if old is not None:
            await old.stop()

    async def stop(self) -> None:
        self.deleted = True
        if self.starting is not None and not self.starting.done():
            self.starting.cancel()
            with contextlib.suppress(BaseException):
                await self.starting
        await self.discard_interpreter()

    async def run(self, code: str, timeout: float | None, sink: Sink) -> int | None:
        """Run under the context's lock; errors are reported to ``sink``, not raised."""
        async with self.lock:
            if sink.gone:  # its client left while it waited for the lock
                return None
            self.busy, self.running = True, sink
            try:
                return await self._run(code, timeout, sink)
            finally:
                self.busy, self.running = False, None
                _activity[0] = time.monotonic()

    async def _run(self, code: str, timeout: float | None, sink: Sink) -> int | None:
        what = "Python kernel" if self.language == "python" else "JavaScript interpreter"
        try:
            interpreter = await self.ensure_started()
        except asyncio.CancelledError:
            if not self.deleted:
                raise
            await sink.error("KernelError", "The context was deleted before it started.", "")
            return None
        except Exception as exc:
            await sink.error("KernelError", f"The {what} could not start: {exc}", "")
            return None
        task = asyncio.create_task(interpreter.run(code, sink))
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if not done and timeout is not None:
                sink.timeout_message = (
                    f"The code ran longer than the {timeout:g} s timeout and was interrupted; "
                    "the context's earlier state is kept."
                )
                errors_before = sink.errors
                await interpreter.interrupt()
                done, _ = await asyncio.wait({task}, timeout=INTERRUPT_GRACE)
                if not done:
                    task.cancel()
                    await self.discard_interpreter()
                    sink.timeout_message = None
                    await sink.error(
                        "TimeoutError",
                        f"The code ran longer than the {timeout:g} s timeout and did not stop "
                        f"when interrupted, so the {what} was restarted: the context's state "
                        "(variables, imports) is lost.",
                        "",
                    )
                    return None
                if sink.errors == errors_before and not task.exception():
                    await sink.error("TimeoutError", sink.timeout_message, "")
            return task.result()
        except Died as exc:
            await self.discard_interpreter()
            sink.timeout_message = None
            deleted = " (the context was deleted)" if self.deleted else ""
            await sink.error(
                "KernelDied",
                f"The {what} died while running this code: {exc}{deleted}. The context "
                "restarts on the next run; its state (variables, imports) is lost.",
                "",
            )
            return None
        finally:
            if not task.done():
                task.cancel()


class SparePython:
    """One Python kernel kept started, so that a new Python context runs at once.

    Made only once Python was used in this sandbox, once no code has run for DELAY
    seconds (its start must not slow the user's code down); a context
    takes it over (changing its cwd and environment) unless its environment holds
    variables a Python process reads only when it starts.
    """

    DELAY = 3.0
    START_ONLY = ("PYTHON", "LD_", "MPL", "JUPYTER", "IPYTHON", "JPY_", "PYDEVD", "OMP_")

    def __init__(self) -> None:
        self.task: asyncio.Task[PythonKernel] | None = None

    def schedule(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self._make())
            self.task.add_done_callback(_observe)

    async def _make(self) -> PythonKernel:
        # Only after DELAY s without any code running.
        while True:
            idle = time.monotonic() - _activity[0]
            if idle >= self.DELAY and not any(c.busy for c in CONTEXTS.values()):
                break
            await asyncio.sleep(max(self.DELAY - idle, 0.5))
        kernel = PythonKernel(WORKSPACE, {})
        try:
            await kernel.start()
        except BaseException:
            await kernel.stop()
            raise
        return kernel

    async def take(self, env: dict[str, str]) -> PythonKernel | None:
        """The spare kernel if it is ready and fits, else None (never waits)."""
        task = self.task
        if task is None or not task.done():
            return None
        if any(key.upper().startswith(self.START_ONLY) for key in env):
            return None
        self.task = None
        if task.cancelled() or task.exception() is not None:
            return None
        kernel = task.result()
        if not kernel.alive():
            await kernel.stop()
            return None
        return kernel


SPARE = SparePython()
_activity = [time.monotonic()]  # when code last ran in any context


def _observe(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # a failed pre-warm is reported by the next run


CONTEXTS: dict[str, Context] = {}


def _context_info(context: Context) -> dict[str, Any]:
    data = context.info().to_dict()
    data.pop("type", None)
    return data


# ------------------------------------------------------------------------ handlers


def _check_language(language: object) -> None:
    if language not in LANGUAGES:
        raise AgentFailure(
            "bad_request", f"language must be one of {', '.join(LANGUAGES)}, not {language!r}"
        )


async def handle_create(request: CodeContextCreate, channel: Channel) -> None:
    _check_language(request.language)
    procs.check_env(request.env)
    if request.cwd is not None and not isinstance(request.cwd, str):
        raise AgentFailure("bad_request", "cwd must be a string")
    cwd = working_directory(resolve_path(request.cwd))
    if sum(1 for c in CONTEXTS if c not in DEFAULT_IDS.values()) >= MAX_CONTEXTS:
        raise AgentFailure(
            "limit_reached",
            f"this sandbox already has {MAX_CONTEXTS} code contexts: delete some "
            "(DELETE .../code/contexts/{id}) before creating more",
        )
    context = Context(secrets.token_hex(6), request.language, cwd, dict(request.env))
    CONTEXTS[context.id] = context
    context.prewarm()
    await channel.send_message(context.info())


async def handle_list(request: CodeContextList, channel: Channel) -> None:
    contexts = sorted(CONTEXTS.values(), key=lambda c: c.created_at)
    await channel.send_message(CodeContexts(contexts=[_context_info(c) for c in contexts]))


async def handle_delete(request: CodeContextDelete, channel: Channel) -> None:
    context = CONTEXTS.pop(request.id, None) if isinstance(request.id, str) else None
    if context is None:
        raise AgentFailure("not_found", f"no code context {request.id!r}")
    await context.stop()
    await channel.send_message(context.info())


async def handle_run(request: CodeRun, channel: Channel) -> None:
    if not isinstance(request.code, str):
        raise AgentFailure("bad_request", "code must be a string")
    if request.language is not None:
        _check_language(request.language)
    timeout = request.timeout
    if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
        raise AgentFailure("bad_request", "timeout must be a positive number of seconds")
    if request.context is not None:
        context = CONTEXTS.get(request.context) if isinstance(request.context, str) else None
        if context is None:
            raise AgentFailure(
                "not_found",
                f"no code context {request.context!r} (contexts end when the sandbox "
                "sleeps or restarts; create a new one)",
            )
        if request.language is not None and request.language != context.language:
            raise AgentFailure(
                "bad_request",
                f"context {context.id} runs {context.language}, not {request.language}",
            )
    else:
        language = request.language or "python"
        context_id = DEFAULT_IDS[language]
        context = CONTEXTS.get(context_id)
        if context is None:
            context = CONTEXTS[context_id] = Context(context_id, language, WORKSPACE, {})
    await channel.send_message(CodeRunStarted(context=context.id, language=context.language))
    started = time.monotonic()
    sink = Sink(channel)
    interpreter_task = asyncio.create_task(context.run(request.code, timeout, sink))
    watcher = asyncio.create_task(_watch_client(channel))
    try:
        done, _ = await asyncio.wait({interpreter_task, watcher}, return_when="FIRST_COMPLETED")
        if watcher in done:
            # The client went away: interrupt the code, let the run finish quietly.
            sink.gone = True
            if context.interpreter is not None and context.running is sink:
                await context.interpreter.interrupt()
        count = await interpreter_task
    finally:
        watcher.cancel()
    await sink._send(
        CodeRunEnd(execution_count=count, duration_ms=round((time.monotonic() - started) * 1000, 3))
    )


async def _watch_client(channel: Channel) -> None:
    """Returns when the client closes the connection (anything it sends is ignored)."""
    while True:
        try:
            frame = await channel.receive()
        except Exception:
            frame = None
        if frame is None:
            return


HANDLERS = table(
    on(CodeContextCreate, handle_create),
    on(CodeContextList, handle_list),
    on(CodeContextDelete, handle_delete),
    on(CodeRun, handle_run),
)
