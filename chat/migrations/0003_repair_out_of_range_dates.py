"""Repair dates outside 1970-2100 that sync pushes used to store.

A push once accepted "0001-01-01T00:00:00+14:00" (stored on PostgreSQL as year 1 BC)
or "9999-12-31T23:59:59-14:00" (year 10000); such a row cannot be read back into
Python, so every page and API answer that showed it failed with a 500. Each bad
date is set to the row's nearest valid date (a conversation's other dates, a
message's stored-at time), else to 1970-01-01 (below the range) or now (above it).
The repaired rows get a new version on their owner's sync clock, so every device
pulls the repaired dates.

Transaction and locks: runs in the migration's transaction (PostgreSQL); it only
UPDATEs, never reads a bad value (selecting one would fail), and takes each
affected owner's clock row lock by ticking it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.db import migrations
from django.db.models import Case, F, Max, OuterRef, Q, Subquery, Value, When
from django.utils import timezone

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)


def out_of_range(name: str) -> Q:
    return Q(**{f"{name}__lt": EARLIEST}) | Q(**{f"{name}__gt": LATEST})


def in_range(name: str) -> Q:
    return Q(**{f"{name}__gte": EARLIEST, f"{name}__lte": LATEST})


def clamped(name: str, fallbacks: tuple[str, ...], now: datetime) -> Case:
    """The first in-range fallback field, else the nearer end of the range (now for the far end)."""
    return Case(
        *(When(in_range(other), then=F(other)) for other in fallbacks),
        When(**{f"{name}__lt": EARLIEST}, then=Value(EARLIEST)),
        default=Value(now),
    )


def chunks(values: list[int], size: int = 500):
    """IN (...) lists under SQLite's parameter limit."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def repair_out_of_range_dates(apps, schema_editor) -> None:
    """Clamp every stored date outside 1970-2100 into range and re-stamp the rows for sync.

    Runs in the migration's transaction; UPDATEs only, and takes each affected owner's
    sync clock row lock (by its UPDATE) to hand out the new version. Safe to run again.
    """
    Conversation = apps.get_model("chat", "Conversation")
    Message = apps.get_model("chat", "Message")
    SyncClock = apps.get_model("chat", "SyncClock")
    now = timezone.now()

    bad_messages = Message.objects.filter(out_of_range("timestamp"))
    message_rows = list(bad_messages.values_list("pk", "conversation_id", "owner_id"))
    bad_conversations = Conversation.objects.filter(
        out_of_range("created_at") | out_of_range("updated_at") | out_of_range("last_message_at")
    )
    conversation_rows = list(bad_conversations.values_list("pk", "owner_id"))
    if not message_rows and not conversation_rows:
        return

    # Messages first, then last_message_at from their repaired timestamps (as recompute_totals
    # takes it), then the conversation's own dates, which may fall back on it.
    bad_messages.update(timestamp=clamped("timestamp", ("created_at",), now))
    newest = Message.objects.filter(conversation_id=OuterRef("pk")).values("conversation_id").annotate(t=Max("timestamp"))
    Conversation.objects.filter(out_of_range("last_message_at")).update(last_message_at=Subquery(newest.values("t")[:1]))
    Conversation.objects.filter(out_of_range("created_at")).update(
        created_at=clamped("created_at", ("updated_at", "last_message_at"), now)
    )
    Conversation.objects.filter(out_of_range("updated_at")).update(
        updated_at=clamped("updated_at", ("last_message_at", "created_at"), now)
    )

    conversations_by_owner: dict[int, set[int]] = {}
    messages_by_owner: dict[int, list[int]] = {}
    for pk, conversation_id, owner_id in message_rows:
        messages_by_owner.setdefault(owner_id, []).append(pk)
        conversations_by_owner.setdefault(owner_id, set()).add(conversation_id)
    for pk, owner_id in conversation_rows:
        conversations_by_owner.setdefault(owner_id, set()).add(pk)
    for owner_id, conversation_pks in conversations_by_owner.items():
        SyncClock.objects.get_or_create(user_id=owner_id)
        SyncClock.objects.filter(user_id=owner_id).update(version=F("version") + 1)
        version = SyncClock.objects.values_list("version", flat=True).get(user_id=owner_id)
        for chunk in chunks(sorted(conversation_pks)):
            Conversation.objects.filter(pk__in=chunk).update(version=version)
        for chunk in chunks(messages_by_owner.get(owner_id, [])):
            Message.objects.filter(pk__in=chunk).update(version=version)


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0002_heartbeat_and_unbilled"),
    ]

    operations = [
        migrations.RunPython(repair_out_of_range_dates, migrations.RunPython.noop),
    ]
