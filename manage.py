#!/usr/bin/env python3
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ide.settings")
    from django.core.management import execute_from_command_line

    from ide.preflight import check_or_exit

    check_or_exit()  # a bad setting, or a database or Redis that is down: one sentence
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
