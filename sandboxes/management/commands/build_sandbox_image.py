"""``manage.py build_sandbox_image``: build the sandbox image unless it is there.

The build's output is streamed line by line (``make run`` shows its steps as progress
and keeps the lines in a log); a failure ends in one sentence naming the cause.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sandboxes.errors import EngineUnavailable
from sandboxes.images import BuildFailed, build_image, ensure_base, image_exists, image_tag


class Command(BaseCommand):
    help = "Build the sandbox image from container/ (the base too, when missing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--force", action="store_true", help="build even if present")
        parser.add_argument("--no-cache", action="store_true", help="ignore the build cache")
        parser.add_argument(
            "--base",
            action="store_true",
            help="only make the base image, and only if the sandbox image is missing",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        tag = image_tag()
        try:
            present = image_exists(tag) and not options["force"]
        except EngineUnavailable as exc:
            raise CommandError(exc.message) from None
        try:
            if options["base"]:
                if present:
                    self.stdout.write("not needed: the sandbox image is present")
                else:
                    ensure_base(log=self.stdout.write)
            elif present:
                self.stdout.write(f"{tag} is present")
            else:
                build_image(tag, log=self.stdout.write, no_cache=options["no_cache"])
                self.stdout.write(f"{tag} built")
        except BuildFailed as exc:
            raise CommandError(exc.message) from None
