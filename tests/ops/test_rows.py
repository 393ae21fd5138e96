"""chatlima/rows.py: its statements do what the querysets they stand for do, on SQLite and PostgreSQL.

* `first_where` returns the instance `filter(...).first()` returns, every field equal and of the
  same type (decimals, datetimes, booleans, JSON: the column converters applied), None when no row
  matches, and `None` in a filter means IS NULL;
* `update_where` changes exactly the rows the filter names, adapts values as `update()` does
  (decimal, JSON, datetime), and returns the count;
* a name that is not a column is refused;
* `insert_row` stores the row `create()` stores (defaults, `auto_now_add`, a related instance or
  its pk, JSON and decimals) in one INSERT, and returns it with its key and the related instances
  given, as create()'s instance has them.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import User
from chat.models import Conversation, Message
from chatlima.rows import first_where, insert_row, select_where, update_where
from usage.models import ApiUsageLog


@pytest.fixture
def chat(db):
    user = User.objects.create_user("rows-user", password="a-long-rows-password-1")
    other = User.objects.create_user("rows-other", password="a-long-rows-password-2")
    conversation = Conversation.objects.create(
        owner=user, title="Costs", temperature=0.5, estimated_cost=Decimal("0.00012345"),
        actual_cost=None, is_active=True, last_message_at=timezone.now(),
    )
    Conversation.objects.create(owner=other, public_id=conversation.public_id, title="Someone else's")
    return user, other, conversation


def _fields(instance) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


def test_first_where_is_the_querysets_row(chat):
    user, other, conversation = chat
    found = first_where(Conversation, owner_id=user.pk, public_id=conversation.public_id, deleted_at=None)
    expected = Conversation.objects.for_user(user).filter(public_id=conversation.public_id).first()
    assert _fields(found) == _fields(expected)
    assert {k: type(v) for k, v in _fields(found).items()} == {k: type(v) for k, v in _fields(expected).items()}
    assert isinstance(found.estimated_cost, Decimal) and found.estimated_cost == Decimal("0.00012345")
    assert found.is_active is True and found.last_message_at.tzinfo is not None
    assert found._state.adding is False  # a loaded row: save() updates it
    # Another owner's conversation with the same public id is not this one.
    theirs = first_where(Conversation, owner_id=other.pk, public_id=conversation.public_id, deleted_at=None)
    assert theirs.pk != found.pk and theirs.title == "Someone else's"


def test_first_where_none_means_is_null(chat):
    user, _, conversation = chat
    Conversation.objects.filter(pk=conversation.pk).update(deleted_at=timezone.now())
    assert first_where(Conversation, owner_id=user.pk, public_id=conversation.public_id, deleted_at=None) is None
    assert first_where(Conversation, owner_id=user.pk, public_id="conv_nobody") is None
    assert first_where(Conversation, owner_id=user.pk, public_id=conversation.public_id).pk == conversation.pk


def test_update_where_changes_the_named_rows_only(chat):
    user, other, conversation = chat
    message = Message.objects.create(owner=user, conversation=conversation, role="assistant", content="",
                                     status=Message.Status.STREAMING)
    bystander = Message.objects.create(owner=user, conversation=conversation, role="user", content="hi")
    at = timezone.now() - timedelta(minutes=3)
    changed = update_where(Message, {"content": "Done.", "status": Message.Status.COMPLETE, "cost": Decimal("0.0001"),
                                     "elapsed_ms": 12, "timestamp": at}, pk=message.pk,
                           status=Message.Status.STREAMING)
    assert changed == 1
    message.refresh_from_db()
    assert (message.content, message.status, message.cost, message.elapsed_ms, message.timestamp) == (
        "Done.", "complete", Decimal("0.0001"), 12, at)
    bystander.refresh_from_db()
    assert (bystander.content, bystander.status) == ("hi", Message.Status.COMPLETE)
    # The compare-and-set: the row is no longer streaming, so nothing changes.
    assert update_where(Message, {"content": "again"}, pk=message.pk, status=Message.Status.STREAMING) == 0
    message.refresh_from_db()
    assert message.content == "Done."


def test_update_where_writes_json_as_update_does(chat):
    user, _, conversation = chat
    row = ApiUsageLog.objects.create(request_id="msg_rows_1", user=user, conversation=conversation,
                                     provider="offline", model_name="offline-demo", metadata={"a": 1})
    assert update_where(ApiUsageLog, {"metadata": {"retries": 2, "note": "é \"quoted\""}, "total_tokens": 7},
                        pk=row.pk) == 1
    row.refresh_from_db()
    assert row.metadata == {"retries": 2, "note": "é \"quoted\""} and row.total_tokens == 7


def test_a_name_that_is_not_a_column_is_refused(chat):
    user, _, _ = chat
    with pytest.raises(Exception, match="no field named|not a column"):
        first_where(Conversation, owner_id=user.pk, messages=1)
    with pytest.raises(Exception, match="no field named|not a column"):
        update_where(Conversation, {"nonsense": 1}, owner_id=user.pk)


def test_select_where_orders_and_limits_as_the_queryset(chat):
    user, _, conversation = chat
    now = timezone.now()
    for n, offset in enumerate([3, 1, 2, 1]):
        Message.objects.create(owner=user, conversation=conversation, role="user", content=f"m{n}",
                               timestamp=now + timedelta(seconds=offset))
    queryset = Message.objects.filter(conversation=conversation)
    for order in [("timestamp", "pk"), ("-timestamp", "-pk"), ("-timestamp", "pk")]:
        expected = [m.content for m in queryset.order_by(*order)]
        assert [m.content for m in select_where(Message, order_by=order, conversation_id=conversation.pk)] == expected
        assert [m.content for m in select_where(Message, order_by=order, limit=2,
                                                conversation_id=conversation.pk)] == expected[:2]
    assert select_where(Message, conversation_id=conversation.pk, role="assistant") == []


def test_postgresql_prepares_a_statement_the_connection_runs_often(chat, settings):
    """CHATLIMA_DB_PREPARE_THRESHOLD (5): the sixth run of one statement is a prepared one, and its
    answers stay right (chatlima/settings.py)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    assert connection.settings_dict["OPTIONS"]["prepare_threshold"] == settings.CHATLIMA_DB_PREPARE_THRESHOLD > 0
    _, _, conversation = chat
    for _ in range(settings.CHATLIMA_DB_PREPARE_THRESHOLD + 1):
        row = first_where(Conversation, owner_id=conversation.owner_id, public_id=conversation.public_id)
        assert row.pk == conversation.pk and row.estimated_cost == Decimal("0.00012345")
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [text for (text,) in cursor.fetchall()]
    assert any('FROM "chat_conversation"' in text for text in prepared), prepared


def test_insert_row_stores_what_create_stores(chat):
    user, _, conversation = chat
    at = timezone.now() - timedelta(minutes=3)
    values = dict(owner=user, conversation=conversation, role=Message.Role.ASSISTANT, content="Hi",
                  model="m-1", timestamp=at, cost=Decimal("0.00000123"), version=7)
    created = Message.objects.create(**values)
    inserted = insert_row(Message, **values)
    assert inserted.pk is not None and inserted.pk != created.pk and inserted._state.adding is False
    stored = Message.objects.get(pk=inserted.pk)
    twin = Message.objects.get(pk=created.pk)
    differ = {"id", "public_id", "created_at"}  # a new key, a new default id, a new stamp
    assert {k: v for k, v in _fields(stored).items() if k not in differ} == {
        k: v for k, v in _fields(twin).items() if k not in differ}
    assert _fields(inserted) == _fields(stored)  # the instance holds what the row holds
    assert stored.public_id.startswith("msg_") and stored.public_id != twin.public_id
    assert stored.status == Message.Status.COMPLETE and stored.content_type == "markdown"
    assert stored.created_at is not None and stored.created_at >= twin.created_at


def test_insert_row_writes_one_statement_and_keeps_the_related_instances(chat):
    user, _, conversation = chat
    with CaptureQueriesContext(connection) as queries:
        row = insert_row(ApiUsageLog, request_id="r-1", user=user, conversation_id=conversation.pk,
                         provider="p", model_name="m", metadata={"held": 12, "note": "é"},
                         cost_estimate=Decimal("0.5"))
        assert row.user is user  # given as an instance: kept, as create() keeps it (no query)
    assert len(queries.captured_queries) == 1 and queries.captured_queries[0]["sql"].startswith("INSERT")
    stored = ApiUsageLog.objects.get(pk=row.pk)
    assert stored.metadata == {"held": 12, "note": "é"} and stored.cost_estimate == Decimal("0.5")
    assert stored.conversation_id == conversation.pk and stored.message_id is None
    assert stored.status == ApiUsageLog.Status.PENDING and stored.user_id == user.pk


@pytest.mark.parametrize("name", ["colour", "pk"])
def test_insert_row_refuses_a_name_that_is_not_a_field(chat, name):
    user, _, conversation = chat
    with pytest.raises(TypeError, match="no field"):
        insert_row(Message, owner=user, conversation=conversation, role="user", **{name: "red"})
    assert not Message.objects.filter(owner=user).exists()
