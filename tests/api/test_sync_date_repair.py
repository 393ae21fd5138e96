"""The data migration that repairs dates outside 1970-2100 stored by old pushes, so a broken account works again."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime

import pytest
from django.apps import apps as django_apps
from django.db import connection, transaction
from django.test import Client

from chat import sync_clock
from chat.models import Conversation, Message
from tests.api.conftest import make_conversation, pull_all
from tests.conftest import bearer_client

pytestmark = pytest.mark.django_db

repair = importlib.import_module("chat.migrations.0003_repair_out_of_range_dates").repair_out_of_range_dates

# What the old push stored for "0001-01-01T00:00:00+14:00" and "9999-12-31T23:59:59-14:00" on PostgreSQL:
# 0001-12-31 10:00 BC and 10000-01-01 13:59:59 UTC, which psycopg cannot turn back into a datetime.
YEAR_1_BC = "0001-01-01T00:00:00+14:00"
YEAR_10000 = "9999-12-31T23:59:59-14:00"
# SQLite holds only what Python can: the old push stored these there.
SQLITE_LOW = datetime(1, 1, 1, 5, tzinfo=UTC)
SQLITE_HIGH = datetime(9999, 12, 31, 23, tzinfo=UTC)
VALID = "2025-07-22T14:40:08.783Z"


def store_as_the_old_push_did(table: str, column: str, value: str, public_id: str) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {table} SET {column} = %s::timestamptz WHERE public_id = %s", [value, public_id])
        return
    model = Conversation if table == Conversation._meta.db_table else Message
    model.objects.filter(public_id=public_id).update(**{column: SQLITE_LOW if value == YEAR_1_BC else SQLITE_HIGH})


def every_door(owner, conversation_ids: list[str]) -> dict[str, int]:
    """Status of each read that showed the broken rows; a crash counts as 500."""
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.filter(is_superuser=True).first() or get_user_model().objects.create_superuser(
        "root", "root@example.com", "a-long-passphrase"
    )
    api = bearer_client(owner)
    api.raise_request_exception = False
    pages = Client(raise_request_exception=False)
    pages.force_login(owner)
    staff = Client(raise_request_exception=False)
    staff.force_login(admin)
    urls = {
        "/api/v1/sync": api, "/api/v1/conversations": api, "/": pages, "/admin/chat/conversation/": staff,
        "/admin/chat/message/": staff,
        **{f"/api/v1/conversations/{c}": api for c in conversation_ids},
        **{f"/api/v1/conversations/{c}/messages": api for c in conversation_ids},
        **{f"/c/{c}/": pages for c in conversation_ids},
    }
    statuses = {}
    for url, client in urls.items():
        with transaction.atomic():  # a failed read must not poison the test's transaction
            statuses[url] = client.get(url).status_code
    return statuses


@pytest.fixture
def broken_account(owner, owner_api):
    """Three conversations as old pushes left them: every date bad; created_at bad; one message bad."""
    body = {"conversations": [make_conversation(c, 4, updated=VALID) for c in ("conv_all_bad", "conv_old", "conv_msg")]}
    assert owner_api.post("/api/v1/sync", body, format="json").status_code == 200
    conversations, messages = Conversation._meta.db_table, Message._meta.db_table
    for column in ("created_at", "last_message_at"):
        store_as_the_old_push_did(conversations, column, YEAR_1_BC, "conv_all_bad")
    store_as_the_old_push_did(conversations, "updated_at", YEAR_10000, "conv_all_bad")
    store_as_the_old_push_did(messages, "timestamp", YEAR_1_BC, "msg_all_bad_m0")
    store_as_the_old_push_did(messages, "timestamp", YEAR_10000, "msg_all_bad_m3")
    store_as_the_old_push_did(conversations, "created_at", YEAR_1_BC, "conv_old")
    store_as_the_old_push_did(messages, "timestamp", YEAR_10000, "msg_msg_m1")
    store_as_the_old_push_did(conversations, "last_message_at", YEAR_10000, "conv_msg")
    return ["conv_all_bad", "conv_old", "conv_msg"]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="year 1 BC and year 10000 exist only on PostgreSQL")
def test_a_broken_account_answers_200_on_every_door_after_the_repair(owner, broken_account):
    broken = every_door(owner, broken_account)
    assert {url for url, status in broken.items() if status == 500} >= {
        "/api/v1/sync", "/api/v1/conversations", "/api/v1/conversations/conv_all_bad", "/", "/c/conv_all_bad/",
        "/admin/chat/conversation/",
    }
    repair(django_apps, None)
    repaired = every_door(owner, broken_account)
    assert repaired == dict.fromkeys(broken, 200)


def test_the_repair_clamps_to_the_rows_other_valid_date_or_the_ends(broken_account):
    repair(django_apps, None)
    after = datetime.now(UTC)
    stored = {m.public_id: m for m in Message.objects.all()}
    # A message takes the time the server stored it.
    for public_id in ("msg_all_bad_m0", "msg_all_bad_m3", "msg_msg_m1"):
        assert stored[public_id].timestamp == stored[public_id].created_at
    assert stored["msg_all_bad_m1"].timestamp == datetime(2025, 7, 22, 14, 0, 1, 500_000, tzinfo=UTC)
    all_bad, old, with_bad_message = (Conversation.objects.get(public_id=c) for c in broken_account)
    # Its newest message, repaired, gives last_message_at; created_at and updated_at fall back on it.
    # (A repaired timestamp is the time the server stored the message: before the repair ran.)
    assert all_bad.last_message_at <= after
    assert all_bad.last_message_at == max(m.timestamp for m in all_bad.messages.all())
    assert all_bad.created_at == all_bad.updated_at == all_bad.last_message_at
    # The conversation's own valid updated_at.
    assert old.created_at == old.updated_at == datetime(2025, 7, 22, 14, 40, 8, 783_000, tzinfo=UTC)
    assert with_bad_message.last_message_at == stored["msg_msg_m1"].timestamp


def test_devices_pull_the_repaired_rows_and_a_healthy_account_is_left_alone(owner, owner_api, stranger_api, stranger,
                                                                             broken_account):
    assert stranger_api.post("/api/v1/sync", {"conversations": [make_conversation("conv_fine")]},
                             format="json").status_code == 200
    healthy = list(Conversation.objects.filter(owner=stranger).values())
    stranger_clock = sync_clock.current(stranger.pk)
    clock = sync_clock.current(owner.pk)
    repair(django_apps, None)
    assert sync_clock.current(owner.pk) == clock + 1
    pulled = {c["id"]: c for c in pull_all(owner_api, _cursor_at(clock))[0]}
    assert set(pulled) == set(broken_account)
    assert pulled["conv_all_bad"]["messages"][0]["id"] != "msg_all_bad_m0"  # it now sorts by its stored-at time
    assert list(Conversation.objects.filter(owner=stranger).values()) == healthy
    assert sync_clock.current(stranger.pk) == stranger_clock
    # Run again: nothing is left to repair, nothing moves.
    repair(django_apps, None)
    assert sync_clock.current(owner.pk) == clock + 1


def _cursor_at(version: int) -> str:
    from chat.sync.cursor import encode_cursor

    return encode_cursor(version, None)
