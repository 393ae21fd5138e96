"""Pull: the user's conversations changed after a cursor, oldest change first, a page at a time.

Pages by the per-user sync clock (chat.sync_clock), so a cursor never misses a change: every row
a writer changes carries the version its tick() returned.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db import connection, models, transaction
from django.db.models import Max

from chat import sync_clock
from chat.attachments.payload import attachments_by_conversation
from chat.models import Conversation, Message, chunks
from chat.payloads import decimal_str, iso, sync_message_payload
from chat.sync.cursor import decode_cursor, encode_cursor

PULL_DEFAULT_LIMIT = 100
PULL_MAX_LIMIT = 500
PULL_MAX_MESSAGES = 20_000


def pull(user, since: str | None, limit: int = PULL_DEFAULT_LIMIT, with_attachments: bool = False) -> dict[str, Any]:
    """The user's conversations changed after `since`, oldest change first, `limit` at a time;
    `with_attachments` adds each one's `attachments` (chat.attachments.payload, without their text).

    The clock is read first: every version up to it is committed (tick() holds the
    clock lock to commit), so the rows with versions in (since, clock] are all
    visible to the queries that follow, whatever the isolation level. A change
    committed meanwhile carries a higher version and comes in the next pull.
    """
    first_sync = not since
    after_version, after_pk = decode_cursor(since) if since else (0, None)
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        with transaction.atomic():
            with connection.cursor() as cursor:
                # One snapshot for the whole page, so a conversation and its messages agree.
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            return _pull(user, first_sync, after_version, after_pk, limit, with_attachments)
    return _pull(user, first_sync, after_version, after_pk, limit, with_attachments)


def _pull(user, first_sync: bool, after_version: int, after_pk: int | None, limit: int,
          with_attachments: bool = False) -> dict[str, Any]:
    ceiling = sync_clock.current(user.pk)
    due = _due(user, first_sync, after_version, after_pk, ceiling)
    page, has_more = due[:limit], len(due) > limit
    conversations = {c.pk: c for c in _fetch_conversations([pk for _, pk in page])}
    page, has_more = _within_message_budget(page, conversations, has_more)
    live_pks = [pk for _, pk in page if pk in conversations and conversations[pk].deleted_at is None]
    messages = _messages_of(live_pks)
    live: list[dict[str, Any]] = []
    deleted: list[str] = []
    for _, pk in page:
        conv = conversations.get(pk)
        if conv is None:
            continue
        if conv.deleted_at is not None:
            deleted.append(conv.public_id)
        else:
            live.append(sync_conversation_payload(conv, messages.get(pk, [])))
    if with_attachments:  # only when asked: attachments are not part of the mobile client's format
        attached = attachments_by_conversation(live_pks)
        for payload, pk in zip(live, live_pks, strict=True):
            payload["attachments"] = attached[pk]
    if has_more:
        last_version, last_pk = page[-1]
        cursor = encode_cursor(last_version, last_pk)
    else:
        cursor = encode_cursor(max(ceiling, after_version), None)
    return {"conversations": live, "deleted": deleted, "cursor": cursor, "has_more": has_more}


def _due(user, first_sync: bool, after_version: int, after_pk: int | None, ceiling: int) -> list[tuple[int, int]]:
    """(version, pk) of every conversation changed after the cursor and up to `ceiling`, oldest first.

    A conversation's version is the newest of its own and its messages' (a writer that stamped
    only a message still makes its conversation due). A first sync skips tombstones.
    """
    # A cursor from the middle of a version must see the rest of that version.
    lowest = after_version if after_pk is not None else after_version + 1
    conv_rows = Conversation.objects.filter(owner=user, version__gte=lowest, version__lte=ceiling)
    message_rows = Message.objects.filter(owner=user, version__gte=lowest, version__lte=ceiling)
    if first_sync:
        conv_rows = conv_rows.filter(deleted_at__isnull=True)
        message_rows = message_rows.filter(conversation__deleted_at__isnull=True)
    effective: dict[int, int] = dict(conv_rows.values_list("pk", "version"))
    for row in message_rows.values("conversation_id").annotate(v=Max("version")).order_by():
        if row["v"] > effective.get(row["conversation_id"], 0):
            effective[row["conversation_id"]] = row["v"]
    # A cursor from the middle of a version names that version and the last pk sent.
    return sorted((v, pk) for pk, v in effective.items() if after_pk is None or v > after_version or pk > after_pk)


def _within_message_budget(
    page: list[tuple[int, int]], conversations: dict[int, Conversation], has_more: bool
) -> tuple[list[tuple[int, int]], bool]:
    """A page also stops at about PULL_MAX_MESSAGES messages (at least one conversation), so a
    few huge conversations cannot make one answer unbounded."""
    carried = 0
    for index, (_, pk) in enumerate(page):
        conv = conversations.get(pk)
        carried += conv.message_count if conv is not None and conv.deleted_at is None else 0
        if index > 0 and carried > PULL_MAX_MESSAGES:
            return page[:index], True
    return page, has_more


def _messages_of(conversation_pks: list[int]) -> dict[int, list[Message]]:
    """The conversations' messages, oldest first, each with its question's public id."""
    found: dict[int, list[Message]] = defaultdict(list)
    for chunk in chunks(conversation_pks):
        for message in (
            Message.objects.filter(conversation_id__in=chunk)
            .annotate(user_message_public_id=models.F("user_message__public_id"),
                      replaces_public_id=models.F("replaces__public_id"))
            .order_by("conversation_id", "timestamp", "pk")
        ):
            found[message.conversation_id].append(message)
    return found


def _fetch_conversations(pks: list[int]) -> list[Conversation]:
    found: list[Conversation] = []
    for chunk in chunks(pks):
        found.extend(Conversation.objects.filter(pk__in=chunk))
    return found


def sync_conversation_payload(conv: Conversation, messages: list[Message]) -> dict[str, Any]:
    """A conversation in the mobile client's format, with the server's derived fields and totals."""
    return {
        "id": conv.public_id,
        "title": conv.title,
        "createdAt": iso(conv.created_at),
        "updatedAt": iso(conv.updated_at),
        "isActive": conv.is_active,
        "userId": str(conv.owner_id),
        "model": conv.model,
        "systemPrompt": conv.system_prompt,
        "messages": [sync_message_payload(m) for m in messages],
        "messageCount": conv.message_count,
        "totalTokens": conv.total_tokens,
        "totalInputTokens": conv.input_tokens,
        "totalOutputTokens": conv.output_tokens,
        "totalCost": decimal_str(conv.estimated_cost),
        "lastMessagePreview": conv.last_message_preview,
        "lastMessageTimestamp": iso(conv.last_message_at),
        "lastModel": conv.last_model,
    }
