"""Starts the ipykernel of a Python code context (``python3 -m sandbox_agent.kernel_launcher
-f CONNECTION_FILE``), as ``ipykernel_launcher`` does, but without ipykernel's debugger:
importing debugpy is about a third of a kernel's start time, and code contexts offer
no debugger. User code can still ``import debugpy`` afterwards.
"""

from __future__ import annotations

import sys
from importlib.abc import MetaPathFinder


class _WithoutDebugpy(MetaPathFinder):
    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "debugpy" or name.startswith("debugpy."):
            raise ImportError("debugpy is not loaded in code contexts")


def main() -> None:
    # As ipykernel_launcher: the working directory goes back on the path later
    # (InteractiveShellApp.init_path), so that user modules never shadow the kernel's.
    if sys.path and sys.path[0] in ("", "."):
        del sys.path[0]
    blocker = _WithoutDebugpy()
    sys.meta_path.insert(0, blocker)
    try:
        import ipykernel.ipkernel  # noqa: F401 - decides here that there is no debugger
    finally:
        sys.meta_path.remove(blocker)
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


if __name__ == "__main__":
    main()
