"""``python -m ide.server [daphne options] ide.asgi:application``: what ``make run`` serves.

Daphne with backpressure on responses (ide/daphne_internals.py), the sandbox
reaper (sleep after idle, orphan clean-up) and the egress proxy for sandboxes with
an allow-list in the same process, so there is no extra command to start. Settings
and the database and Redis they name are checked first (ide/preflight.py).
"""

from __future__ import annotations

import asyncio
import os

from django.conf import settings

from ide.daphne_internals import FlowControlServer, command_line
from ide.preflight import check_or_exit


class IDEServer(FlowControlServer):
    _reaper: asyncio.Future[None] | None = None
    _egress_proxy: asyncio.Future[None] | None = None

    def started(self) -> None:
        from sandboxes.egress.proxy import listen_if_needed

        self._egress_proxy = asyncio.ensure_future(listen_if_needed())
        if settings.SANDBOX_REAPER:
            # Imported here: Django's apps are ready only once Daphne loaded ide.asgi.
            from sandboxes.reaper import run_forever

            self._reaper = asyncio.ensure_future(run_forever())


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ide.settings")
    check_or_exit()
    command_line(IDEServer)


if __name__ == "__main__":
    main()
