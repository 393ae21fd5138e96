"""Indexes: every foreign key of ours is still found through an index that leads with it (deletes
cascade through them), and on the tables every exchange writes no index is another's double or
prefix (each index is written again on every insert and every non-HOT update, e.g. each settle)."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import connection

pytestmark = pytest.mark.django_db

OURS = ("accounts", "chat", "usage")
# What prepare_exchange and settle_exchange insert into or update, every exchange.
EXCHANGE_TABLES = ("chat_message", "chat_conversation", "chat_syncclock", "api_usage_logs", "accounts_budget",
                   "accounts_budgetreservation")


def test_the_exchange_tables_are_ours():
    assert set(EXCHANGE_TABLES) <= {m._meta.db_table for m in _models()}


def _indexes(table: str, rules: set[str] | None = None) -> dict[str, tuple[str, ...]]:
    """The table's indexes by name, as their columns; the names of the unique ones and the primary key
    go into `rules` when given."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    indexes = {name: c for name, c in constraints.items() if (c["index"] or c["unique"] or c["primary_key"]) and c["columns"]}
    if rules is not None:
        rules.update(name for name, c in indexes.items() if c["unique"] or c["primary_key"])
    return {name: tuple(c["columns"]) for name, c in indexes.items()}


def _models():
    return [m for m in apps.get_models() if m._meta.app_label in OURS and m._meta.managed]


def test_every_foreign_key_leads_an_index():
    unindexed = []
    for model in _models():
        leading = {columns[0] for columns in _indexes(model._meta.db_table).values()}
        for field in model._meta.concrete_fields:
            if field.is_relation and field.column not in leading:
                unindexed.append(f"{model._meta.db_table}.{field.column}")
    assert unindexed == []


def test_no_index_on_an_exchanges_tables_repeats_or_prefixes_another():
    found = []
    for model in _models():
        if model._meta.db_table not in EXCHANGE_TABLES:
            continue
        rules: set[str] = set()
        indexes = _indexes(model._meta.db_table, rules)
        for name, columns in indexes.items():
            # A unique index or the primary key stands for a rule, not for speed: keep it. A `_like`
            # index is PostgreSQL's varchar_pattern_ops twin, for LIKE: another operator class.
            if name in rules or name.endswith("_like"):
                continue
            for other, wider in indexes.items():
                if other != name and wider[:len(columns)] == columns:
                    found.append(f"{name} {columns} is covered by {other} {wider}")
    assert found == []


def test_the_dropped_indexes_are_gone_and_their_columns_still_lead_one():
    for table, column, dropped in (
        ("api_usage_logs", "user_id", "api_usage_logs_user_id_13f9cbd8"),
        ("api_usage_logs", "conversation_id", "api_usage_logs_conversation_id_2ed45745"),
        ("accounts_budgetreservation", "user_id", "accounts_budgetreservation_user_id_baf33b3d"),
        ("chat_conversation", "owner_id", "chat_conversation_owner_id_0460d4a2"),
        ("chat_message", "owner_id", "chat_message_owner_id_20a4d94c"),
        ("chat_message", "conversation_id", "chat_message_conversation_id_a1207bf4"),
    ):
        indexes = _indexes(table)
        assert dropped not in indexes
        assert any(columns[0] == column for columns in indexes.values()), (table, column)
