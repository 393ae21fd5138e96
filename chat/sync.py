"""Two-way sync for mobile clients: push (client -> server) and pull (server -> client).

The wire format is the mobile client's (seed 000, camelCase kept) plus the token
fields. Rules (API.md "Sync for mobile clients"):

* push is all or nothing: the body is validated whole before anything is
  written, and every write happens in one transaction;
* push is idempotent: a replay finds nothing to change, writes nothing and does
  not move the user's sync clock;
* derived fields are the server's; messages are append-only; a message the
  server produced keeps the server's figures; budgets are never touched;
* pull pages by the per-user sync clock, so a cursor never misses a change.

Locking contract of `push`: it takes the user's sync clock row lock FIRST (it is
the per-user mutex that serialises two devices pushing at once), then reads and
writes the user's conversations and messages, and ticks the clock once, only
when something changed. A writer that locks rows before ticking may deadlock
with it; PostgreSQL detects that and `push` retries.
"""

from __future__ import annotations

import base64
import binascii
from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.db import DatabaseError, connection, models, transaction
from django.db.models import Count, Max, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from chat import sync_clock
from chat.models import TOTAL_FIELDS, Conversation, Message, SyncClock, preview_of
from chat.payloads import decimal_str, iso, sync_message_payload
from chat.sync_parse import (  # the push limits are validation's; the doors read them from here
    MAX_PUSH_CONVERSATIONS,  # noqa: F401
    MAX_PUSH_DELETED,  # noqa: F401
    MAX_PUSH_MESSAGES,  # noqa: F401
    TOKEN_FIELDS,
    ItemErrors,
    PushedConversation,
    PushedMessage,
    parse_push,
)
from chatlima.errors import ClientError

PULL_DEFAULT_LIMIT = 100
PULL_MAX_LIMIT = 500
PULL_MAX_MESSAGES = 20_000

# IN (...) lists and insert batches stay under every backend's parameter limit.
CHUNK = 900
INSERT_BATCH = 1_000

# Fields of a message the client may fill in later (e.g. figures it learnt after the first push).
CLIENT_OWNED_MESSAGE_FIELDS = (*TOKEN_FIELDS, "model", "completion_id", "elapsed_ms", "content_type", "user_message_id")
# A cursor names a version and a primary key, both bigint columns.
MAX_CURSOR_NUMBER = 2**63 - 1


# --------------------------------------------------------------------------- push


def _chunks(values: list, size: int = CHUNK) -> Iterable[list]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _lock_clock(user_id: int) -> int:
    """Take the user's clock row lock (the per-user writer mutex); returns the clock's value."""
    SyncClock.objects.get_or_create(user_id=user_id)
    return SyncClock.objects.select_for_update().filter(user_id=user_id).values_list("version", flat=True).get()


def push(user, body: Any) -> dict[str, Any]:
    """Apply a push body for `user`; all or nothing, idempotent. Returns the contract's answer."""
    conversations, deleted = parse_push(body)
    since = body.get("since")
    if since == "":
        since = None  # an empty cursor is no cursor, as on the pull
    if since is not None and not isinstance(since, str):
        raise ClientError("INVALID_MESSAGE", "`since` must be a cursor string.", {"since": "invalid cursor"})
    since_position = decode_cursor(since) if since else None
    attempts = 3
    for attempt in range(attempts):
        try:
            with transaction.atomic():
                return _push_locked(user, conversations, deleted, since, since_position)
        except DatabaseError as exc:  # deadlock or serialisation failure: retry the whole push
            cause = getattr(exc, "__cause__", None)
            sqlstate = getattr(cause, "sqlstate", None)
            if sqlstate not in ("40P01", "40001") or attempt == attempts - 1 or connection.in_atomic_block:
                raise
    raise AssertionError("unreachable")


def _push_locked(
    user,
    conversations: list[PushedConversation],
    deleted: list[str],
    since: str | None,
    since_position: tuple[int, int | None] | None,
) -> dict[str, Any]:
    now = timezone.now()
    clock_before = _lock_clock(user.pk)

    conv_ids = [c.id for c in conversations] + deleted
    existing: dict[str, Conversation] = {}
    for chunk in _chunks(conv_ids):
        for conv in Conversation.objects.filter(owner=user, public_id__in=chunk):
            existing[conv.public_id] = conv

    wanted_message_ids = {m.id for c in conversations for m in c.messages}
    wanted_message_ids |= {m.user_message_ref for c in conversations for m in c.messages if m.user_message_ref}
    stored: dict[str, Message] = {}
    for chunk in _chunks(sorted(wanted_message_ids)):
        for message in Message.objects.filter(owner=user, public_id__in=chunk):
            stored[message.public_id] = message

    # Checks that need the database; still before any write.
    errors = ItemErrors()
    for conversation in conversations:
        conv = existing.get(conversation.id)
        in_body = {m.id for m in conversation.messages}
        for message in conversation.messages:
            known = stored.get(message.id)
            if known is not None and (conv is None or known.conversation_id != conv.pk):
                errors.add(f"{message.path}.id", "This message id belongs to another of your conversations.")
            ref = message.user_message_ref
            if ref and ref not in in_body:
                target = stored.get(ref)
                if target is None or conv is None or target.conversation_id != conv.pk:
                    errors.add(f"{message.path}.user_message_id", "Names no user message of this conversation.")
                elif target.role != Message.Role.USER:
                    errors.add(f"{message.path}.user_message_id", "Must name a user message.")
    if errors:
        raise ClientError("INVALID_MESSAGE", "The sync body has invalid items; nothing was stored.", errors.items)

    results: list[dict[str, Any]] = []
    touched: dict[str, Conversation] = {}  # conversations whose row must be written (fields, totals or version)
    fields_changed: set[str] = set()
    new_conversations: list[Conversation] = []
    skip_messages: set[str] = set()

    for conversation in conversations:
        conv = existing.get(conversation.id)
        result = {"id": conversation.id, "status": "unchanged", "messages": {"created": 0, "updated": 0, "unchanged": 0}}
        results.append(result)
        if conv is None:
            created_at = conversation.created_at or (
                min(m.timestamp for m in conversation.messages) if conversation.messages else now
            )
            conv = Conversation(
                owner=user,
                public_id=conversation.id,
                title=conversation.title or "",
                # Blank unless the client names one: a send then uses the default model rather than
                # whatever old (perhaps unconfigured) model the history was written with.
                model=conversation.model or "",
                system_prompt=conversation.system_prompt or "",
                is_active=True if conversation.is_active is None else conversation.is_active,
                created_at=created_at,
                updated_at=min(conversation.updated_at or created_at, now),
            )
            new_conversations.append(conv)
            existing[conversation.id] = conv
            touched[conversation.id] = conv
            result["status"] = "created"
            continue
        # A device whose clock runs ahead must not win every later conflict: no edit is in the future.
        pushed_at = min(conversation.updated_at, now) if conversation.updated_at else None
        if conv.deleted_at is not None:
            # A tombstone wins unless the client edited the conversation after it was deleted.
            if pushed_at is None or pushed_at <= conv.deleted_at:
                skip_messages.add(conversation.id)
                result["deleted"] = True
                result["messages"]["unchanged"] = len(conversation.messages)
                continue
            conv.deleted_at = None
            fields_changed.add("deleted_at")
            touched[conversation.id] = conv
            result["status"] = "updated"
        if pushed_at is not None and pushed_at > conv.updated_at:
            changes = {
                "title": conversation.title,
                "is_active": conversation.is_active,
                "model": conversation.model,
                "system_prompt": conversation.system_prompt,
            }
            changed = [name for name, value in changes.items() if value is not None and getattr(conv, name) != value]
            if changed:
                for name in changed:
                    setattr(conv, name, changes[name])
                conv.updated_at = pushed_at
                fields_changed.update(changed)
                fields_changed.add("updated_at")
                touched[conversation.id] = conv
                result["status"] = "updated"

    if new_conversations:
        Conversation.objects.bulk_create(new_conversations, batch_size=INSERT_BATCH)

    # Messages: append new ones; fill in client-owned fields of the client's own stored ones.
    result_by_id = {r["id"]: r for r in results}
    to_create: list[tuple[Message, str | None]] = []
    to_update: list[Message] = []
    update_fields: set[str] = set()
    for conversation in conversations:
        if conversation.id in skip_messages:
            continue
        conv = existing[conversation.id]
        counts = result_by_id[conversation.id]["messages"]
        for pushed in conversation.messages:
            known = stored.get(pushed.id)
            if known is None:
                message = Message(
                    owner=user,
                    conversation=conv,
                    public_id=pushed.id,
                    role=pushed.role,
                    content=pushed.content,
                    model=pushed.model,
                    timestamp=pushed.timestamp,
                    content_type=pushed.content_type or "markdown",
                    completion_id=pushed.completion_id,
                    elapsed_ms=pushed.elapsed_ms,
                    figures_source=Message.FiguresSource.CLIENT,
                    **pushed.tokens,
                )
                to_create.append((message, pushed.user_message_ref))
                counts["created"] += 1
                touched[conversation.id] = conv
                continue
            changed = _client_changes(known, pushed, stored)
            if changed:
                to_update.append(known)
                update_fields.update(changed)
                counts["updated"] += 1
                touched[conversation.id] = conv
            else:
                counts["unchanged"] += 1

    tombstoned: list[dict[str, str]] = []
    for conv_id in deleted:
        conv = existing.get(conv_id)
        if conv is None or conv.deleted_at is not None:
            tombstoned.append({"id": conv_id, "status": "unchanged"})
            continue
        conv.deleted_at = now
        conv.updated_at = now
        fields_changed.update({"deleted_at", "updated_at"})
        touched[conv_id] = conv
        tombstoned.append({"id": conv_id, "status": "deleted"})

    version = None
    if touched:
        version = sync_clock.tick(user.pk)
        # User messages first, so an answer in the same body can point at its question's row.
        by_public_id = {m.public_id: m for m in stored.values()}
        questions = [m for m, _ in to_create if m.role == Message.Role.USER]
        others = [(m, ref) for m, ref in to_create if m.role != Message.Role.USER]
        for message in questions:
            message.version = version
        Message.objects.bulk_create(questions, batch_size=INSERT_BATCH)
        by_public_id.update({m.public_id: m for m in questions})
        for message, ref in others:
            message.version = version
            if ref:
                message.user_message_id = by_public_id[ref].pk
        Message.objects.bulk_create([m for m, _ in others], batch_size=INSERT_BATCH)
        if to_update:
            for message in to_update:
                message.version = version
            Message.objects.bulk_update(to_update, sorted(update_fields | {"version"}), batch_size=INSERT_BATCH)
        for result in results:
            if result["id"] in touched and result["status"] == "unchanged":
                result["status"] = "updated"
        recompute_totals_bulk(list(touched.values()))
        for conv in touched.values():
            conv.version = version
            if conv.last_message_at and conv.last_message_at > conv.updated_at:
                conv.updated_at = conv.last_message_at
        # An upsert on the primary key writes every touched row in one statement per batch;
        # bulk_update's CASE per field is many times slower for a thousand rows.
        Conversation.objects.bulk_create(
            list(touched.values()),
            batch_size=INSERT_BATCH,
            update_conflicts=True,
            unique_fields=["id"],
            update_fields=sorted(set(TOTAL_FIELDS) | fields_changed | {"version", "updated_at"}),
        )
    # The answer's cursor may skip past this push only for a client that was up to date
    # (its `since` is the clock before the push); otherwise its own cursor stands, so
    # another device's changes it has not pulled yet are not skipped.
    clock_after = version if version is not None else clock_before
    if since is None or (since_position is not None and since_position[1] is None and since_position[0] >= clock_before):
        cursor = encode_cursor(clock_after, None)
    else:
        cursor = since
    return {
        "conversations": results,
        "deleted": tombstoned,
        "cursor": cursor,
        "server_time": iso(timezone.now()),
    }


def _client_changes(known: Message, pushed: PushedMessage, stored: dict[str, Message]) -> list[str]:
    """Set on `known` what the client may still fill in; the server's own messages keep everything."""
    # Only messages a client brought in are the client's to fill in; one the server made
    # (settled, or still streaming with its figures to come) keeps the server's fields.
    if known.figures_source != Message.FiguresSource.CLIENT:
        return []
    changed: list[str] = []
    candidates: dict[str, Any] = dict(pushed.tokens)
    candidates["model"] = pushed.model or None
    candidates["completion_id"] = pushed.completion_id or None
    candidates["elapsed_ms"] = pushed.elapsed_ms
    candidates["content_type"] = pushed.content_type
    if pushed.user_message_ref:
        target = stored.get(pushed.user_message_ref)
        # A question pushed in this same body is created later; link it only when it is stored.
        candidates["user_message_id"] = target.pk if target is not None else None
    for name, value in candidates.items():
        if value is None or name not in CLIENT_OWNED_MESSAGE_FIELDS:
            continue
        if getattr(known, name) != value:
            setattr(known, name, value)
            changed.append(name)
    return changed


def recompute_totals_bulk(conversations: list[Conversation]) -> None:
    """`Conversation.recompute_totals()` for many conversations in a bounded number of queries.

    Sets the fields in memory; the caller saves them. Must keep the same rule.
    """
    by_pk = {c.pk: c for c in conversations}
    sums: dict[int, dict[str, Any]] = {}
    last: dict[int, Message] = {}
    user = Q(role=Message.Role.USER)
    assistant = Q(role=Message.Role.ASSISTANT)
    for chunk in _chunks(list(by_pk)):
        rows = (
            Message.objects.filter(conversation_id__in=chunk)
            .values("conversation_id")
            .annotate(
                i=Coalesce(Sum("prompt_tokens", filter=user), 0),
                o=Coalesce(Sum("completion_tokens", filter=assistant), 0),
                t=Coalesce(Sum(Coalesce("total_tokens", "completion_tokens"), filter=assistant), 0),
                r=Coalesce(Sum("reasoning_tokens", filter=assistant), 0),
                c=Coalesce(Sum("cached_tokens", filter=assistant), 0),
                cost=Coalesce(Sum("cost", filter=assistant), Decimal("0"), output_field=models.DecimalField()),
                actual=Sum("actual_cost", filter=assistant),
                n=Count("id"),
            )
            .order_by()
        )
        for row in rows:
            sums[row["conversation_id"]] = row
        newest = Message.objects.filter(conversation_id=OuterRef("pk")).order_by("-timestamp", "-pk").values("pk")[:1]
        last_pks = (
            Conversation.objects.filter(pk__in=chunk).annotate(last_pk=Subquery(newest)).values_list("last_pk", flat=True)
        )
        for message in Message.objects.filter(pk__in=[pk for pk in last_pks if pk]).only(
            "conversation_id", "content", "timestamp", "model"
        ):
            last[message.conversation_id] = message
    for pk, conv in by_pk.items():
        row = sums.get(pk)
        newest_message = last.get(pk)
        conv.input_tokens = row["i"] if row else 0
        conv.output_tokens = row["o"] if row else 0
        conv.total_tokens = row["t"] if row else 0
        conv.reasoning_tokens = row["r"] if row else 0
        conv.cached_tokens = row["c"] if row else 0
        conv.estimated_cost = row["cost"] if row else Decimal("0")
        conv.actual_cost = row["actual"] if row else None
        conv.message_count = row["n"] if row else 0
        conv.last_message_preview = preview_of(newest_message.content) if newest_message else ""
        conv.last_message_at = newest_message.timestamp if newest_message else None
        conv.last_model = (newest_message.model if newest_message else "") or conv.model


# --------------------------------------------------------------------------- pull


def encode_cursor(version: int, last_pk: int | None) -> str:
    raw = f"1:{version}" if last_pk is None else f"1:{version}:{last_pk}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int | None]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        parts = raw.split(":")
        if parts[0] != "1" or len(parts) not in (2, 3):
            raise ValueError(raw)
        version = int(parts[1])
        last_pk = int(parts[2]) if len(parts) == 3 else None
        if not 0 <= version <= MAX_CURSOR_NUMBER or (last_pk is not None and not 0 <= last_pk <= MAX_CURSOR_NUMBER):
            raise ValueError(raw)
        return version, last_pk
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise ClientError("INVALID_MESSAGE", "`since` is not a cursor this server issued.", {"since": "invalid cursor"}) from exc


def parse_limit(value: str | None) -> int:
    if value in (None, ""):
        return PULL_DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError as exc:
        raise ClientError("INVALID_MESSAGE", "`limit` must be a whole number.", {"limit": "not an integer"}) from exc
    if limit < 1 or limit > PULL_MAX_LIMIT:
        raise ClientError("INVALID_MESSAGE", f"`limit` is between 1 and {PULL_MAX_LIMIT}.", {"limit": "out of range"})
    return limit


def pull(user, since: str | None, limit: int = PULL_DEFAULT_LIMIT) -> dict[str, Any]:
    """The user's conversations changed after `since`, oldest change first, `limit` at a time.

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
            return _pull(user, first_sync, after_version, after_pk, limit)
    return _pull(user, first_sync, after_version, after_pk, limit)


def _pull(user, first_sync: bool, after_version: int, after_pk: int | None, limit: int) -> dict[str, Any]:
    ceiling = sync_clock.current(user.pk)
    effective: dict[int, int] = {}
    # A cursor from the middle of a version must see the rest of that version.
    lowest = after_version if after_pk is not None else after_version + 1
    conv_rows = Conversation.objects.filter(owner=user, version__gte=lowest, version__lte=ceiling)
    message_rows = Message.objects.filter(owner=user, version__gte=lowest, version__lte=ceiling)
    if first_sync:
        conv_rows = conv_rows.filter(deleted_at__isnull=True)
        message_rows = message_rows.filter(conversation__deleted_at__isnull=True)
    for pk, version in conv_rows.values_list("pk", "version"):
        effective[pk] = version
    # A writer that stamped only a message still makes its conversation due.
    message_rows = (
        message_rows
        .values("conversation_id")
        .annotate(v=Max("version"))
        .order_by()
    )
    for row in message_rows:
        if row["v"] > effective.get(row["conversation_id"], 0):
            effective[row["conversation_id"]] = row["v"]
    # A cursor from the middle of a version names that version and the last pk sent.
    due = sorted((v, pk) for pk, v in effective.items() if after_pk is None or v > after_version or pk > after_pk)
    page = due[:limit]
    has_more = len(due) > limit
    conversations = {c.pk: c for c in _fetch_conversations([pk for _, pk in page])}
    # A page also stops at about PULL_MAX_MESSAGES messages (at least one conversation), so a
    # few huge conversations cannot make one answer unbounded.
    carried = 0
    for index, (_, pk) in enumerate(page):
        conv = conversations.get(pk)
        carried += conv.message_count if conv is not None and conv.deleted_at is None else 0
        if index > 0 and carried > PULL_MAX_MESSAGES:
            page, has_more = page[:index], True
            break
    messages_by_conv: dict[int, list[Message]] = defaultdict(list)
    live_pks = [pk for _, pk in page if pk in conversations and conversations[pk].deleted_at is None]
    for chunk in _chunks(live_pks):
        for message in (
            Message.objects.filter(conversation_id__in=chunk)
            .annotate(user_message_public_id=models.F("user_message__public_id"))
            .order_by("conversation_id", "timestamp", "pk")
        ):
            messages_by_conv[message.conversation_id].append(message)
    live: list[dict[str, Any]] = []
    deleted: list[str] = []
    for _, pk in page:
        conv = conversations.get(pk)
        if conv is None:
            continue
        if conv.deleted_at is not None:
            deleted.append(conv.public_id)
        else:
            live.append(sync_conversation_payload(conv, messages_by_conv.get(pk, [])))
    if has_more:
        last_version, last_pk = page[-1]
        cursor = encode_cursor(last_version, last_pk)
    else:
        cursor = encode_cursor(max(ceiling, after_version), None)
    return {"conversations": live, "deleted": deleted, "cursor": cursor, "has_more": has_more}


def _fetch_conversations(pks: list[int]) -> list[Conversation]:
    found: list[Conversation] = []
    for chunk in _chunks(pks):
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


# --------------------------------------------------------------------------- REST writes


def _stamp(conv: Conversation) -> None:
    """Tick the owner's clock and stamp the conversation; call inside the writer's transaction."""
    conv.version = sync_clock.tick(conv.owner_id)


def create_conversation(user, *, public_id: str | None, title: str = "", model: str = "", system_prompt: str = "") -> tuple[Conversation, bool]:
    """Create the user's conversation, or return the live one with that id (a retried POST is safe)."""
    with transaction.atomic():
        _lock_clock(user.pk)
        if public_id:
            found = Conversation.objects.filter(owner=user, public_id=public_id).first()
            if found is not None and found.deleted_at is None:
                return found, False
            if found is not None:
                raise ClientError(
                    "INVALID_MESSAGE", "This id belonged to a conversation you deleted; choose another.", {"id": "deleted"}
                )
        now = timezone.now()
        conv = Conversation(owner=user, title=title, model=model, system_prompt=system_prompt, created_at=now, updated_at=now)
        if public_id:
            conv.public_id = public_id
        _stamp(conv)
        conv.last_model = model
        conv.save()
        return conv, True


def update_conversation(conv: Conversation, changes: dict[str, str]) -> Conversation:
    """PATCH title, model or system_prompt; a real change moves the sync clock."""
    with transaction.atomic():
        _lock_clock(conv.owner_id)
        conv = Conversation.objects.select_for_update().get(pk=conv.pk)
        changed = [name for name, value in changes.items() if getattr(conv, name) != value]
        if not changed:
            return conv
        for name in changed:
            setattr(conv, name, changes[name])
        conv.updated_at = timezone.now()
        _stamp(conv)
        conv.save(update_fields=[*changed, "updated_at", "version"])
        return conv


def delete_conversation(conv: Conversation) -> None:
    """Leave a tombstone, so every device learns of the delete on its next pull."""
    with transaction.atomic():
        _lock_clock(conv.owner_id)
        now = timezone.now()
        conv.deleted_at = now
        conv.updated_at = now
        _stamp(conv)
        conv.save(update_fields=["deleted_at", "updated_at", "version"])
