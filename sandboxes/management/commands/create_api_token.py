"""``manage.py create_api_token USERNAME [--create-user]``: print a new bearer token.

The token is the last line of output, alone, so scripts can take it with ``tail -1``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sandboxes.models import ApiToken


class Command(BaseCommand):
    help = "Create an API token for USERNAME and print it on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--create-user", action="store_true", help="create the user if it does not exist"
        )
        parser.add_argument("--name", default="cli", help="a label for the token")

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        username = options["username"]
        try:
            user = User.objects.get(username=username)
        except User.DoesNotExist:
            if not options["create_user"]:
                raise CommandError(
                    f"No user {username!r}; pass --create-user to create it."
                ) from None
            user = User.objects.create_user(username=username)
            self.stderr.write(f"created user {username} (no password: set one with changepassword)")
        _row, token = ApiToken.issue(user, name=options["name"])
        self.stdout.write(token)
