"""`manage.py backup FILE`: a consistent copy of the database, safe while kebaweb runs."""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chargers.backups import BackupError, back_up


class Command(BaseCommand):
    help = "Back up the database to FILE while kebaweb runs (README: Backups)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="a new file for the backup")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            how = back_up(options["file"])
        except BackupError as exc:
            raise CommandError(str(exc), returncode=2) from None
        self.stdout.write(f"backed up to {options['file']}; {how}")
