#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kebaweb.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line
    from django.db import OperationalError

    # A person starting a command needs one line saying what to change, not a
    # traceback; exit status 2 is argparse's "wrong usage", as for bad options.
    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        sys.exit(stop(str(exc)))
    except OperationalError as exc:
        sys.exit(
            stop(
                "cannot use the database: check DATABASE_URL and that its server is running "
                f"(on a new database, run `python manage.py migrate` first): {exc}"
            )
        )


def stop(message: str) -> int:
    # Database drivers write several lines (psycopg adds a hint on a second one).
    print(f"kebaweb: {' '.join(message.split())}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    main()
