"""Django for a benchmark, over a data folder of its own: never the user's data.

Every benchmark beside this file starts Django this way, with DEBUG off (it keeps
every query, which would skew times and memory) and the in-memory channel layer.
"""

import os
from pathlib import Path


def set_up_django(
    data_dir: Path, *, migrate: bool = True, keep_database_url: bool = False, **environment: str
) -> None:
    """`environment`: more settings for this benchmark, as environment variables.
    `keep_database_url`: measure the PostgreSQL server DATABASE_URL names, if set."""
    os.environ.update(
        KEBAWEB_DATA_DIR=str(data_dir),
        KEBAWEB_DEBUG="0",
        DJANGO_SETTINGS_MODULE="kebaweb.settings",
        **environment,
    )
    os.environ.pop("REDIS_URL", None)
    if not keep_database_url:
        os.environ.pop("DATABASE_URL", None)
    import django
    from django.core.management import call_command

    django.setup()
    if migrate:
        call_command("migrate", verbosity=0)
