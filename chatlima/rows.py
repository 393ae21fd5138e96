"""Single-table statements for the exchange's hot path, with their SQL built once per shape.

Django compiles a queryset's SQL again on every call: for a one-row `filter(pk=...).update(...)` or
`filter(...).first()` that compiling costs 250-450 us of CPU here, several times the statement's
own round trip (30-160 us; bench/prepare_settle.py, chat/exchange/__init__.py). These helpers take
the same model field names and values, adapt each value with its field
(`get_db_prep_save`, as `update()` and `create()` do), and run one literal statement whose text is
cached per (model, fields). Equality only, `None` meaning IS NULL: anything richer stays a queryset.
No library does this (django-cachalot and friends cache results, not SQL), hence these few lines.

`select_where` orders by field names ("-" for descending). Each runs in the caller's transaction,
if any, on the default connection; an UPDATE takes the rows' locks to that transaction's end, as
`QuerySet.update()` does. The cached texts are keyed by the database vendor, as quoting and the
column converters are the vendor's.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, TypeVar

from django.db import connection, models

M = TypeVar("M", bound=models.Model)


def _field(model: type[models.Model], name: str) -> models.Field:
    field = model._meta.pk if name == "pk" else model._meta.get_field(name)
    if not getattr(field, "concrete", False) or field.many_to_many:
        raise ValueError(f"{model.__name__}.{name} is not a column")
    return field


@lru_cache(maxsize=256)
def _where(model: type[models.Model], names: tuple[str, ...], nulls: tuple[bool, ...], vendor: str) -> str:
    quote = connection.ops.quote_name
    return " AND ".join(
        f"{quote(_field(model, n).column)} IS NULL" if null else f"{quote(_field(model, n).column)} = %s"
        for n, null in zip(names, nulls, strict=True)
    )


def _where_params(model: type[models.Model], where: dict[str, Any]) -> tuple[str, list[Any]]:
    names = tuple(where)
    nulls = tuple(v is None for v in where.values())
    params = [_field(model, n).get_db_prep_value(v, connection, prepared=False)
              for n, v in where.items() if v is not None]
    return _where(model, names, nulls, connection.vendor), params


@lru_cache(maxsize=256)
def _update_sql(model: type[models.Model], names: tuple[str, ...], vendor: str) -> str:
    quote = connection.ops.quote_name
    sets = ", ".join(f"{quote(_field(model, n).column)} = %s" for n in names)
    return f"UPDATE {quote(model._meta.db_table)} SET {sets} WHERE "


def update_where(model: type[models.Model], values: dict[str, Any], **where: Any) -> int:
    """`model.objects.filter(**where).update(**values)` for plain column values (no expressions);
    returns the number of rows changed."""
    names = tuple(values)
    sets = [_field(model, n).get_db_prep_save(v, connection) for n, v in values.items()]
    condition, params = _where_params(model, where)
    with connection.cursor() as cursor:
        cursor.execute(_update_sql(model, names, connection.vendor) + condition, [*sets, *params])
        return cursor.rowcount


@lru_cache(maxsize=64)
def _select(model: type[models.Model], vendor: str) -> tuple[str, list[str], list[tuple[int, list, Any]]]:
    """The SELECT of every column, their attribute names, and the columns whose values need
    converting (SQLite's decimals, datetimes and booleans; on PostgreSQL psycopg already did)."""
    quote = connection.ops.quote_name
    fields = model._meta.concrete_fields
    columns = ", ".join(quote(f.column) for f in fields)
    converting = []
    for i, field in enumerate(fields):
        col = field.get_col(model._meta.db_table)
        found = connection.ops.get_db_converters(col) + field.get_db_converters(connection)
        if found:
            converting.append((i, found, col))
    return f"SELECT {columns} FROM {quote(model._meta.db_table)} WHERE ", [f.attname for f in fields], converting


@lru_cache(maxsize=64)
def _order(model: type[models.Model], order_by: tuple[str, ...], vendor: str) -> str:
    quote = connection.ops.quote_name
    return ", ".join(f"{quote(_field(model, n.lstrip('-')).column)}{' DESC' if n.startswith('-') else ''}"
                     for n in order_by)


def select_where(model: type[M], *, order_by: tuple[str, ...] = (), limit: int | None = None,
                 **where: Any) -> list[M]:
    """`list(model.objects.filter(**where).order_by(*order_by)[:limit])` as model instances."""
    sql, names, converting = _select(model, connection.vendor)
    condition, params = _where_params(model, where)
    sql += condition
    if order_by:
        sql += " ORDER BY " + _order(model, order_by, connection.vendor)
    if limit is not None:
        sql += " LIMIT %s"
        params.append(limit)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    found = []
    for row in rows:
        values = list(row)
        for i, converters, col in converting:
            for convert in converters:
                values[i] = convert(values[i], col, connection)
        found.append(model.from_db(connection.alias, names, values))
    return found


def first_where(model: type[M], **where: Any) -> M | None:
    """The one row `model.objects.filter(**where)` finds, as a model instance, or None (where the
    filter names a unique key; of several rows, any one)."""
    found = select_where(model, limit=1, **where)
    return found[0] if found else None
