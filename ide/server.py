"""Daphne with backpressure: ``python -m ide.server [daphne options] ide.asgi:application``.

Daphne hands every ASGI ``send`` to Twisted, which buffers whatever the socket cannot
take yet; an app that streams faster than the client reads (exec output, a preview
download, a terminal flood) would grow the server's memory without bound. Here
``send`` does not return while the connection's unsent buffer is above a high-water
mark, so the app - and through the agent socket, the program in the sandbox - waits
for the slow client instead.

The same process also runs the sandbox reaper (sleep after idle, orphan clean-up).
"""

from __future__ import annotations

import asyncio
from typing import Any

from daphne.cli import CommandLineInterface
from daphne.server import Server

HIGH_WATER = 512 * 1024


def unsent_bytes(protocol: Any) -> int:
    """Bytes Twisted holds for this connection that the socket has not taken yet."""
    channel = getattr(protocol, "channel", None)  # HTTP: the request's channel
    transport = getattr(channel if channel is not None else protocol, "transport", None)
    if transport is None:
        return 0
    pending = len(getattr(transport, "dataBuffer", b"")) - getattr(transport, "offset", 0)
    return pending + getattr(transport, "_tempDataLen", 0)


class FlowControlServer(Server):
    def run(self) -> None:
        from twisted.internet import reactor

        reactor.callWhenRunning(self._start_background_tasks)  # type: ignore[attr-defined]
        super().run()

    def _start_background_tasks(self) -> None:
        """The sandbox reaper runs in the server process: no extra command to start."""
        from django.conf import settings

        if settings.SANDBOX_REAPER:
            from sandboxes.reaper import run_forever

            self._reaper = asyncio.ensure_future(run_forever())

    async def handle_reply(self, protocol: Any, message: dict[str, Any]) -> None:
        await super().handle_reply(protocol, message)
        delay = 0.001
        while unsent_bytes(protocol) > HIGH_WATER:
            state = self.connections.get(protocol)
            if state is None or state.get("disconnected"):
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)


class FlowControlCLI(CommandLineInterface):
    server_class = FlowControlServer


def main() -> None:
    FlowControlCLI.entrypoint()


if __name__ == "__main__":
    main()
