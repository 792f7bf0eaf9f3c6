"""Entry point: ``python3 -m sandbox_agent --socket PATH [--tcp HOST:PORT] [--user NAME]``.

``--user`` names the sandbox user that an agent started as root drops to (see
``identity``); its key comes from the server in ``SANDBOX_AGENT_KEY``. ``--tcp`` (or
``SANDBOX_AGENT_TCP``, which the server sets so that the image's command stays the
same) adds a network listener whose every connection is challenged.

Arguments are read by hand: argparse alone costs ~10 ms of every agent start, and
a stopped sandbox waits for the agent to start when it wakes.
"""

from __future__ import annotations

import asyncio
import sys

from . import identity

USAGE = "usage: sandbox_agent [--socket PATH] [--tcp HOST:PORT] [--user NAME]"


def parse(argv: list[str]) -> dict[str, str]:
    options = {"socket": "/run/sandbox-agent/agent.sock", "tcp": "", "user": ""}
    args = iter(argv)
    for arg in args:
        name, eq, value = arg.partition("=")
        key = name.removeprefix("--")
        if not name.startswith("--") or key not in options:
            raise SystemExit(f"{USAGE}\nunknown argument {arg!r}")
        if not eq:
            value = next(args, None)  # type: ignore[assignment]
            if value is None:
                raise SystemExit(f"{USAGE}\n{name} needs a value")
        options[key] = value
    return options


def main() -> None:
    options = parse(sys.argv[1:])
    if options["user"]:
        # Before anything that spawns (or binds subprocess.Popen, as GitPython does)
        # is imported.
        identity.install_child_identity()
    from .server import serve

    asyncio.run(serve(options["socket"], options["tcp"], options["user"]))


if __name__ == "__main__":
    main()
