"""``manage.py mcp_tools``: write the SDK's copy of the MCP tool catalogue."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sandboxes.mcp.catalogue import SDK_COPY, as_json


class Command(BaseCommand):
    help = "Write sdk/python/sandbox_ide/mcp/tools.json from the tools' pydantic models."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--check", action="store_true", help="fail if it is out of date")

    def handle(self, *args: Any, **options: Any) -> None:
        wanted = as_json()
        if options["check"]:
            if SDK_COPY.read_text() != wanted:
                raise CommandError(f"{SDK_COPY} is out of date: run manage.py mcp_tools")
            return
        SDK_COPY.write_text(wanted)
