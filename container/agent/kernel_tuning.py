"""Run once inside every Python kernel the agent starts (kernels.PythonKernel), before
any user code: it shortens the round trip of a run, which is mostly hand-offs between
ipykernel's main thread and its I/O thread.

It defines nothing in the user's namespace (it is run with ``runpy.run_path``).
"""

from __future__ import annotations

import sys

from ipykernel.iostream import OutStream
from IPython import get_ipython

# The I/O thread sends every message: let it have the GIL sooner than after the
# default 5 ms.
sys.setswitchinterval(0.0002)

_flush = OutStream.flush


def _flush_if_written(self: OutStream) -> None:
    """ipykernel flushes stdout and stderr twice per run, each time waiting for the
    I/O thread; when nothing was written since the last flush there is nothing to
    wait for."""
    if (
        not getattr(self, "_flush_pending", True)
        and not getattr(self, "_subprocess_flush_pending", True)
        and self._buffer.tell() == 0
    ):
        return
    _flush(self)


# (unused-ignore: where ipykernel is not installed, as on the host, OutStream is Any)
OutStream.flush = _flush_if_written  # type: ignore[method-assign, unused-ignore]

_shell = get_ipython()
_kernel = getattr(_shell, "kernel", None)
if _kernel is not None and hasattr(_kernel, "_execute_sleep"):
    _kernel._execute_sleep = 0  # a fixed 0.5 ms sleep before each execute_reply
