"""Many rows updated in one statement: UPDATE ... FROM a list of VALUES.

The gateway writes the latest status of every polled station once a second. One
UPDATE per row costs a query's compile and round trip each; bulk_update's CASE
expressions grow with the square of the rows. Joining a VALUES list is one
statement on both SQLite (3.33 and later) and PostgreSQL.
"""

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connection, models

# PostgreSQL's protocol limit on parameters in one statement.
MAX_PARAMETERS = 65_535


def update_rows(
    model: type[models.Model],
    fields: Sequence[str],
    rows: Mapping[int, Mapping[str, Any]],
    where: str = "",
) -> int:
    """Set `fields` of each row whose primary key is a key of `rows`; returns rows changed.

    `where` adds a condition on the table's own columns (raw SQL, no parameters),
    e.g. "ended_at IS NULL"."""
    if not rows:
        return 0
    meta = model._meta
    concrete = [_field(model, name) for name in fields]
    primary = meta.pk
    assert primary is not None
    quote = connection.ops.quote_name
    table, pk = quote(meta.db_table), quote(primary.column)
    columns = [quote(field.column) for field in concrete]
    aliases = [f"v{n}" for n in range(len(columns))]
    if connection.vendor == "postgresql":
        # A VALUES list has no column types of its own: NULLs would be text.
        types = [field.db_type(connection) for field in concrete]
        sources = [f"CAST(v.{a} AS {t})" for a, t in zip(aliases, types, strict=True)]
        key = f"CAST(v.id AS {primary.db_type(connection)})"
    else:
        sources = [f"v.{a}" for a in aliases]
        key = "v.id"
    assignments = ", ".join(f"{c} = {s}" for c, s in zip(columns, sources, strict=True))
    condition = f" AND {table}.{where}" if where else ""
    per_statement = max(1, _max_parameters() // (len(columns) + 1))
    items = list(rows.items())
    changed = 0
    with connection.cursor() as cursor:
        for start in range(0, len(items), per_statement):
            chunk = items[start : start + per_statement]
            row_sql = "(" + ", ".join(["%s"] * (len(columns) + 1)) + ")"
            params: list[Any] = []
            for row_pk, values in chunk:
                params.append(row_pk)
                for field in concrete:
                    params.append(field.get_db_prep_save(values[field.name], connection))
            values_sql = ", ".join([row_sql] * len(chunk))
            cursor.execute(
                f"WITH v (id, {', '.join(aliases)}) AS (VALUES {values_sql}) "
                f"UPDATE {table} SET {assignments} FROM v WHERE {table}.{pk} = {key}{condition}",
                params,
            )
            changed += cursor.rowcount
    return changed


def _field(model: type[models.Model], name: str) -> "models.Field[Any, Any]":
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field)
    return field


def _max_parameters() -> int:
    if connection.vendor == "sqlite":
        # Django assumes SQLite's old limit of 999; the library in use says its own.
        connection.ensure_connection()
        limit: int = connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        return limit
    return MAX_PARAMETERS
