"""``python -m ide.server [daphne options] ide.asgi:application``: what ``make run`` serves.

Daphne with backpressure on responses (ide/daphne_internals.py), the sandbox
reaper (sleep after idle, orphan clean-up) and the egress proxy for sandboxes with
an allow-list in the same process (ide/background.py), so there is no extra command
to start. Settings and the database and Redis they name are checked first, and the
database claimed where only one server process may use it (ide/preflight.py).
"""

from __future__ import annotations

import os

from ide.daphne_internals import FlowControlServer, command_line
from ide.preflight import check_or_exit, claim_server_or_exit


class IDEServer(FlowControlServer):
    def started(self) -> None:
        # Imported here: Django's apps are ready only once Daphne loaded ide.asgi.
        from ide.background import start

        start()


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ide.settings")
    check_or_exit()
    claim_server_or_exit()
    command_line(IDEServer)


if __name__ == "__main__":
    main()
