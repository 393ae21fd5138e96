"""One-row UPDATEs and INSERTs for the exchange's hot path, as one plain SQL statement each.

Compiling an ORM `update()` with F() expressions costs about a millisecond of CPU, ten times what
the statement itself costs, and every message runs several of them. `update_row` writes the same
statement (`SET col = COALESCE(col, 0) + %s`, `SET col = %s`, `WHERE col = %s`) from the model's
own column names and field adapters, so values are stored exactly as the ORM would store them.
`insert_row` does the same for `Model.objects.create()`, whose save() machinery costs as much.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db import connections, router
from django.db.models import Model

M = TypeVar("M", bound=Model)


def update_row(model: type[Model], where: dict[str, Any], *, add: dict[str, Any] | None = None,
               set: dict[str, Any] | None = None) -> int:  # noqa: A002 - reads like the SQL it writes
    """UPDATE the rows matching `where` (field = value); `add` increments (NULL counts as 0), `set` assigns.

    Returns the number of rows changed, so a compare-and-set can check it.
    """
    meta = model._meta
    connection = connections[router.db_for_write(model)]
    quote = connection.ops.quote_name
    assignments: list[str] = []
    params: list[Any] = []
    for name, value in (add or {}).items():
        field = meta.get_field(name)
        column = quote(field.column)
        assignments.append(f"{column} = COALESCE({column}, 0) + %s")
        params.append(field.get_db_prep_save(value, connection))
    for name, value in (set or {}).items():
        field = meta.get_field(name)
        assignments.append(f"{quote(field.column)} = %s")
        params.append(field.get_db_prep_save(value, connection))
    conditions: list[str] = []
    for name, value in where.items():
        field = meta.pk if name == "pk" else meta.get_field(name)
        conditions.append(f"{quote(field.column)} = %s")
        params.append(field.get_db_prep_value(value, connection))
    sql = f"UPDATE {quote(meta.db_table)} SET {', '.join(assignments)} WHERE {' AND '.join(conditions)}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def insert_row(obj: M) -> M:
    """INSERT one unsaved model instance (defaults and auto_now_add applied as save() would) and set its pk.

    No signals are sent, as with bulk_create; the exchange's models listen to none.
    """
    meta = obj._meta
    connection = connections[router.db_for_write(type(obj))]
    quote = connection.ops.quote_name
    fields = [f for f in meta.concrete_fields if not (f.primary_key and getattr(obj, f.attname) is None)]
    params = [f.get_db_prep_save(f.pre_save(obj, add=True), connection) for f in fields]
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))}) RETURNING {quote(meta.pk.column)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        obj.pk = meta.pk.to_python(cursor.fetchone()[0])
    obj._state.adding = False
    obj._state.db = connection.alias
    return obj
