"""``manage.py check_engine``: exit 1 with one sentence naming the cause when Docker is
not usable (dockerd not running, the socket not ours, no docker command)."""

from __future__ import annotations

import shutil
import sys
from typing import Any

from asgiref.sync import async_to_sync
from django.core.management.base import BaseCommand

from sandboxes.backends import get_backend
from sandboxes.errors import EngineUnavailable


class Command(BaseCommand):
    help = "Exit 0 if the container engine answers; otherwise say why not and what to do."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            async_to_sync(get_backend().ping)()
        except EngineUnavailable as exc:
            self.stderr.write(exc.message)
            sys.exit(1)
        if shutil.which("docker") is None:
            self.stderr.write(
                "The docker command is missing (the image build runs it): install the "
                "Docker command-line client, e.g. `sudo apt-get install docker.io`."
            )
            sys.exit(1)
        self.stdout.write("Docker engine is answering.")
