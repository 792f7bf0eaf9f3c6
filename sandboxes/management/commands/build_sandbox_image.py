"""``manage.py build_sandbox_image``: build the sandbox image unless it is there."""

from __future__ import annotations

import subprocess
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sandboxes.errors import EngineUnavailable
from sandboxes.images import build_image, image_exists, image_tag


class Command(BaseCommand):
    help = "Build the sandbox image from container/ (the base too, when missing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--force", action="store_true", help="build even if present")
        parser.add_argument("--no-cache", action="store_true", help="ignore the build cache")

    def handle(self, *args: Any, **options: Any) -> None:
        tag = image_tag()
        try:
            present = image_exists(tag)
        except EngineUnavailable as exc:
            raise CommandError(exc.message) from None
        if present and not options["force"]:
            self.stdout.write(f"sandbox image {tag} is present")
            return
        try:
            build_image(tag, log=self.stdout.write, no_cache=options["no_cache"])
        except subprocess.CalledProcessError as exc:
            raise CommandError(f"building the sandbox image failed ({exc}); see above") from None
        self.stdout.write(self.style.SUCCESS(f"sandbox image {tag} built"))
