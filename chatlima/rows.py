"""Single-table statements for the exchange's hot path, with their SQL built once per shape.

Django compiles a queryset's SQL again on every call: for a one-row `filter(pk=...).update(...)` or
`filter(...).first()` that compiling costs 250-450 us of CPU here, several times the statement's
own round trip (30-160 us; bench/prepare_settle.py, chat/exchange/__init__.py). These helpers take
the same model field names and values, adapt each value with its field
(`get_db_prep_save`, as `update()` and `create()` do), and run one literal statement whose text is
cached per (model, fields). Equality only, `None` meaning IS NULL: anything richer stays a queryset.
No library does this (django-cachalot and friends cache results, not SQL), hence these few lines.

`insert_row` stores a new row as `create()` would (each field's default for what is not given,
`auto_now`/`auto_now_add` stamped, a related instance given kept on the instance); it skips the
instance `create()` builds first and the INSERT's compiling (chat/exchange/__init__.py has the
figures). `select_where` orders by field names ("-" for descending). Each runs in the caller's
transaction, if any, on the default connection; an UPDATE takes the rows' locks to that transaction's end, as
`QuerySet.update()` does. The cached texts are keyed by the database vendor, as quoting and the
column converters are the vendor's.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connection, connections, models
from django.utils import timezone

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


def _db():
    """The default connection itself: each attribute read through `django.db.connection` (a proxy)
    looks the connection up again in asgiref's Local, which per value adapted added up to a tenth
    of an INSERT's CPU here."""
    return connections[DEFAULT_DB_ALIAS]


def _where_params(model: type[models.Model], where: dict[str, Any], db) -> tuple[str, list[Any]]:
    names = tuple(where)
    nulls = tuple(v is None for v in where.values())
    params = [_field(model, n).get_db_prep_value(v, db, prepared=False)
              for n, v in where.items() if v is not None]
    return _where(model, names, nulls, db.vendor), params


@lru_cache(maxsize=256)
def _update_sql(model: type[models.Model], names: tuple[str, ...], vendor: str) -> str:
    quote = connection.ops.quote_name
    sets = ", ".join(f"{quote(_field(model, n).column)} = %s" for n in names)
    return f"UPDATE {quote(model._meta.db_table)} SET {sets} WHERE "


def update_where(model: type[models.Model], values: dict[str, Any], **where: Any) -> int:
    """`model.objects.filter(**where).update(**values)` for plain column values (no expressions);
    returns the number of rows changed."""
    db = _db()
    names = tuple(values)
    sets = [_field(model, n).get_db_prep_save(v, db) for n, v in values.items()]
    condition, params = _where_params(model, where, db)
    with db.cursor() as cursor:
        cursor.execute(_update_sql(model, names, db.vendor) + condition, [*sets, *params])
        return cursor.rowcount


@lru_cache(maxsize=64)
def _columns(model: type[models.Model], names: tuple[str, ...] | None, vendor: str, alias: str = ""
             ) -> tuple[str, list[str], list[tuple[int, list, Any]]]:
    """The columns of the fields `names` (None: every concrete field; each as `alias.column` with
    an alias), their attribute names, and the columns whose values need converting (SQLite's
    decimals, datetimes and booleans; on PostgreSQL psycopg already did)."""
    quote = connection.ops.quote_name
    prefix = f"{alias}." if alias else ""
    fields = model._meta.concrete_fields if names is None else [_field(model, n) for n in names]
    converting = []
    for i, field in enumerate(fields):
        col = field.get_col(model._meta.db_table)
        found = connection.ops.get_db_converters(col) + field.get_db_converters(connection)
        if found:
            converting.append((i, found, col))
    return ", ".join(prefix + quote(f.column) for f in fields), [f.attname for f in fields], converting


def _select(model: type[models.Model], vendor: str) -> tuple[str, list[str], list[tuple[int, list, Any]]]:
    """The SELECT of every column, with `_columns`' attribute names and converters."""
    columns, names, converting = _columns(model, None, vendor)
    return f"SELECT {columns} FROM {connection.ops.quote_name(model._meta.db_table)} WHERE ", names, converting


@lru_cache(maxsize=64)
def _order(model: type[models.Model], order_by: tuple[str, ...], vendor: str) -> str:
    quote = connection.ops.quote_name
    return ", ".join(f"{quote(_field(model, n.lstrip('-')).column)}{' DESC' if n.startswith('-') else ''}"
                     for n in order_by)


def select_where(model: type[M], *, order_by: tuple[str, ...] = (), limit: int | None = None,
                 **where: Any) -> list[M]:
    """`list(model.objects.filter(**where).order_by(*order_by)[:limit])` as model instances."""
    db = _db()
    sql, names, converting = _select(model, db.vendor)
    condition, params = _where_params(model, where, db)
    sql += condition
    if order_by:
        sql += " ORDER BY " + _order(model, order_by, db.vendor)
    if limit is not None:
        sql += " LIMIT %s"
        params.append(limit)
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [from_row(model, row, db) for row in rows]


def select_list(model: type[models.Model], alias: str) -> str:
    """Every column of `model` as `alias.column`, in `from_row`'s order: for a literal join."""
    return _columns(model, None, _db().vendor, alias)[0]


def from_row(model: type[M], row, db=None, fields: tuple[str, ...] | None = None) -> M:
    """An instance of `model` from its columns in concrete-field order (`select_list`), or those of
    `fields` only (the others deferred), with the vendor's converters applied as a queryset would."""
    db = db or _db()
    _, names, converting = _columns(model, fields, db.vendor)
    values = list(row)
    for i, converters, col in converting:
        for convert in converters:
            values[i] = convert(values[i], col, db)
    return model.from_db(db.alias, names, values)


def update_returning(model: type[M], sql: str, params: list[Any], fields: tuple[str, ...] | None = None) -> M | None:
    """Run a literal one-row UPDATE of `model`'s table and return that row as the UPDATE left it,
    under the lock it took (RETURNING: PostgreSQL, SQLite 3.35+), as an instance with `fields` (None:
    all; the others deferred); None if it updated no row. `Model.objects.raw()` did this at several
    times the CPU (RawQuerySet's column mapping per call)."""
    db = _db()
    columns, _, _ = _columns(model, fields, db.vendor)
    with db.cursor() as cursor:
        cursor.execute(f"{sql} RETURNING {columns}", params)
        row = cursor.fetchone()
    return None if row is None else from_row(model, row, db, fields)


def first_where(model: type[M], **where: Any) -> M | None:
    """The one row `model.objects.filter(**where)` finds, as a model instance, or None (where the
    filter names a unique key; of several rows, any one)."""
    found = select_where(model, limit=1, **where)
    return found[0] if found else None


@lru_cache(maxsize=64)
def _insert(model: type[models.Model], vendor: str) -> tuple[str, tuple[models.Field, ...]]:
    """The INSERT of every concrete column but a database-made primary key, RETURNING that key."""
    quote = connection.ops.quote_name
    pk = model._meta.pk
    fields = tuple(f for f in model._meta.concrete_fields if f is not pk or not f.db_returning)
    columns = ", ".join(quote(f.column) for f in fields)
    sql = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})"
    if pk not in fields:
        sql += f" RETURNING {quote(pk.column)}"
    return sql, fields


@lru_cache(maxsize=64)
def _names(model: type[models.Model]) -> frozenset[str]:
    fields = model._meta.concrete_fields
    return frozenset([f.name for f in fields] + [f.attname for f in fields])


def insert_row(model: type[M], /, **values: Any) -> M:
    """`model.objects.create(**values)` for plain values (field names or attnames; a related field
    takes an instance or its pk). The instance returned holds the stored values and its primary key,
    and the related instances given, as create()'s does. Runs in the caller's transaction, if any.
    Where the database cannot return the new key from an INSERT, it is `create()`."""
    db = _db()
    if not db.features.can_return_columns_from_insert:
        return model.objects.create(**values)
    unknown = set(values) - _names(model)
    if unknown:
        raise TypeError(f"{model.__name__} has no field {', '.join(sorted(unknown))}")
    sql, fields = _insert(model, db.vendor)
    now = timezone.now()
    related: list[tuple[models.Field, models.Model]] = []
    stored: dict[models.Field, Any] = {}
    for field in fields:
        if field.name in values:
            value = values[field.name]
            if field.is_relation and isinstance(value, models.Model):
                related.append((field, value))
                value = value.pk
        elif field.attname in values:
            value = values[field.attname]
        elif getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            value = now
        else:
            value = field.get_default()
        stored[field] = value
    with db.cursor() as cursor:
        cursor.execute(sql, [f.get_db_prep_save(v, db) for f, v in stored.items()])
        if model._meta.pk not in stored:
            stored[model._meta.pk] = cursor.fetchone()[0]
    # from_db's positional path: a fraction of what the keyword path of Model.__init__ costs.
    instance = model.from_db(db.alias, None, [stored[f] for f in model._meta.concrete_fields])
    for field, value in related:
        field.set_cached_value(instance, value)
    return instance
