"""``manage.py check_engine``: one clear sentence and exit 1 when Docker is not there."""

from __future__ import annotations

import sys
from typing import Any

from asgiref.sync import async_to_sync
from django.core.management.base import BaseCommand

from sandboxes.backends import get_backend
from sandboxes.errors import EngineUnavailable


class Command(BaseCommand):
    help = "Exit 0 if the container engine answers; otherwise say how to start it."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            async_to_sync(get_backend().ping)()
        except EngineUnavailable:
            self.stderr.write(
                "No Docker engine answers (is dockerd running?): start it with "
                "`sudo systemctl start docker`, or `sudo dockerd &` where there is no "
                "systemd, wait until `docker info` works, and try again."
            )
            sys.exit(1)
        self.stdout.write("Docker engine is answering.")
