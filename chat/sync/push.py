"""Push: apply a mobile client's body to the user's history, all or nothing and idempotent.

Rules (API.md "Sync for mobile clients"): the body is validated whole (chat.sync.schema) before
anything is written, and every write happens in one transaction; a replay finds nothing to change,
writes nothing and does not move the user's sync clock; derived fields are the server's; messages
are append-only; a message the server produced keeps the server's figures; budgets are never touched.

Locking contract of `push`: it takes the user's sync clock row lock FIRST (the per-user mutex that
serialises two devices pushing at once), then reads and writes the user's conversations and
messages, and ticks the clock once, only when something changed. A writer that locks rows before
ticking may deadlock with it; PostgreSQL detects that and `push` retries.
"""

from __future__ import annotations

from typing import Any

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from chat import sync_clock
from chat.attachments.store import delete_for_conversations
from chat.models import TOTAL_FIELDS, Conversation, Message, chunks, derive_totals
from chat.payloads import iso
from chat.sync.cursor import decode_cursor, encode_cursor
from chat.sync.schema import TOKEN_FIELDS, SyncConversation, SyncMessage, SyncPush, parse_push
from chatlima.errors import ClientError

INSERT_BATCH = 1_000
ATTEMPTS = 3
RETRYABLE_SQLSTATES = ("40P01", "40001")  # deadlock detected, serialisation failure
# Fields of a message the client may fill in later (e.g. figures it learnt after the first push).
CLIENT_OWNED_MESSAGE_FIELDS = (*TOKEN_FIELDS, "model", "completion_id", "elapsed_ms", "content_type", "user_message_id")


def push(user, body: Any) -> dict[str, Any]:
    """Apply a push body for `user`; all or nothing, idempotent. Returns the contract's answer.

    Validation needs no transaction; the rest is one transaction that starts with the clock lock,
    retried whole (up to ATTEMPTS times) when PostgreSQL ends it for a deadlock or serialisation failure.
    """
    parsed = parse_push(body)
    since = parsed.since or None  # an empty cursor is no cursor, as on the pull
    since_position = decode_cursor(since) if since else None
    for attempt in range(ATTEMPTS):
        try:
            with transaction.atomic():
                return _push_locked(user, parsed, since, since_position)
        except DatabaseError as exc:
            sqlstate = getattr(exc.__cause__, "sqlstate", None)
            if sqlstate not in RETRYABLE_SQLSTATES or attempt == ATTEMPTS - 1 or connection.in_atomic_block:
                raise
    raise AssertionError("unreachable")


def _push_locked(user, body: SyncPush, since: str | None, since_position: tuple[int, int | None] | None) -> dict[str, Any]:
    clock_before = sync_clock.lock(user.pk)
    merge = _Merge(user, body)
    merge.check_against_stored()
    merge.merge_conversations()
    merge.merge_messages()
    tombstoned = merge.tombstone()
    version = merge.write() if merge.touched else None
    return {
        "conversations": list(merge.results.values()),
        "deleted": tombstoned,
        "cursor": _answer_cursor(since, since_position, clock_before, version),
        "server_time": iso(timezone.now()),
    }


def _answer_cursor(since: str | None, since_position: tuple[int, int | None] | None, clock_before: int, version: int | None) -> str:
    """The answer's cursor may skip past this push only for a client that was up to date (its
    `since` is the clock before the push); otherwise its own cursor stands, so another device's
    changes it has not pulled yet are not skipped."""
    clock_after = version if version is not None else clock_before
    if since is None or (since_position is not None and since_position[1] is None and since_position[0] >= clock_before):
        return encode_cursor(clock_after, None)
    return since


class _Merge:
    """One push inside its transaction: the stored rows it names, what it changes, then the writes.

    Runs under the user's clock lock (taken by `_push_locked`); writes nothing before `write`
    except the new conversations, which the new messages need to point at.
    """

    def __init__(self, user, body: SyncPush) -> None:
        self.user = user
        self.now = timezone.now()
        self.pushed = body.conversations
        self.deleted = list(dict.fromkeys(body.deleted))
        self.existing = _stored_conversations(user, [c.id for c in self.pushed] + self.deleted)
        named = {m.id for c in self.pushed for m in c.message_list}
        named |= {m.user_message_id for c in self.pushed for m in c.message_list if m.user_message_id}
        self.stored = _stored_messages(user, named)
        self.results: dict[str, dict[str, Any]] = {}  # by conversation id, in the body's order
        self.touched: dict[str, Conversation] = {}  # conversations whose row must be written
        self.fields_changed: set[str] = set()
        self.tombstone_kept: set[str] = set()  # conversations whose messages a tombstone refuses
        self.to_create: list[tuple[Message, str | None]] = []  # with the question's public id
        self.to_update: list[Message] = []
        self.update_fields: set[str] = set()

    def check_against_stored(self) -> None:
        """What only the stored history can refute: a message id of another conversation, and an
        answer whose question is not a stored user message of its conversation. Before any write."""
        errors: dict[str, str] = {}
        for i, pushed in enumerate(self.pushed):
            conv = self.existing.get(pushed.id)
            in_body = {m.id for m in pushed.message_list}
            for j, message in enumerate(pushed.message_list):
                path = f"conversations[{i}].messages[{j}]"
                known = self.stored.get(message.id)
                if known is not None and (conv is None or known.conversation_id != conv.pk):
                    errors.setdefault(f"{path}.id", "This message id belongs to another of your conversations.")
                ref = message.user_message_id
                if ref and ref not in in_body:
                    target = self.stored.get(ref)
                    if target is None or conv is None or target.conversation_id != conv.pk:
                        errors.setdefault(f"{path}.user_message_id", "Names no user message of this conversation.")
                    elif target.role != Message.Role.USER:
                        errors.setdefault(f"{path}.user_message_id", "Must name a user message.")
        if errors:
            raise ClientError("INVALID_MESSAGE", "The sync body has invalid items; nothing was stored.", errors)

    def merge_conversations(self) -> None:
        """Create the new conversations (inserted now) and apply the client's later edits to stored ones."""
        new: list[Conversation] = []
        for pushed in self.pushed:
            self.results[pushed.id] = {"id": pushed.id, "status": "unchanged", "messages": {"created": 0, "updated": 0, "unchanged": 0}}
            conv = self.existing.get(pushed.id)
            if conv is None:
                conv = self._new_conversation(pushed)
                new.append(conv)
                self.existing[pushed.id] = conv
                self._touch(conv, status="created")
            else:
                self._edit_conversation(conv, pushed)
        if new:
            Conversation.objects.bulk_create(new, batch_size=INSERT_BATCH)

    def _new_conversation(self, pushed: SyncConversation) -> Conversation:
        first_message = min((m.timestamp or self.now for m in pushed.message_list), default=self.now)
        created_at = pushed.created_at or first_message
        return Conversation(
            owner=self.user,
            public_id=pushed.id,
            title=pushed.title or "",
            # Blank unless the client names one: a send then uses the default model rather than
            # whatever old (perhaps unconfigured) model the history was written with.
            model=pushed.model or "",
            system_prompt=pushed.system_prompt or "",
            is_active=True if pushed.is_active is None else pushed.is_active,
            created_at=created_at,
            updated_at=min(pushed.updated_at or created_at, self.now),
        )

    def _edit_conversation(self, conv: Conversation, pushed: SyncConversation) -> None:
        # A device whose clock runs ahead must not win every later conflict: no edit is in the future.
        pushed_at = min(pushed.updated_at, self.now) if pushed.updated_at else None
        if conv.deleted_at is not None:
            # A tombstone wins unless the client edited the conversation after it was deleted.
            if pushed_at is None or pushed_at <= conv.deleted_at:
                self.tombstone_kept.add(pushed.id)
                self.results[pushed.id]["deleted"] = True
                self.results[pushed.id]["messages"]["unchanged"] = len(pushed.message_list)
                return
            conv.deleted_at = None
            self.fields_changed.add("deleted_at")
            self._touch(conv)
        if pushed_at is None or pushed_at <= conv.updated_at:
            return
        edits = {"title": pushed.title, "is_active": pushed.is_active, "model": pushed.model, "system_prompt": pushed.system_prompt}
        changed = [name for name, value in edits.items() if value is not None and getattr(conv, name) != value]
        if changed:
            for name in changed:
                setattr(conv, name, edits[name])
            conv.updated_at = pushed_at
            self.fields_changed.update([*changed, "updated_at"])
            self._touch(conv)

    def merge_messages(self) -> None:
        """Append the new messages; fill in client-owned fields of the client's own stored ones."""
        for pushed in self.pushed:
            if pushed.id in self.tombstone_kept:
                continue
            conv = self.existing[pushed.id]
            counts = self.results[pushed.id]["messages"]
            for message in pushed.message_list:
                known = self.stored.get(message.id)
                if known is None:
                    self.to_create.append((self._new_message(conv, message), message.user_message_id))
                    counts["created"] += 1
                    self._touch(conv)
                elif changed := _client_changes(known, message, self.stored):
                    self.to_update.append(known)
                    self.update_fields.update(changed)
                    counts["updated"] += 1
                    self._touch(conv)
                else:
                    counts["unchanged"] += 1

    def _new_message(self, conv: Conversation, pushed: SyncMessage) -> Message:
        return Message(
            owner=self.user,
            conversation=conv,
            public_id=pushed.id,
            role=pushed.role,
            content=pushed.content,
            model=pushed.stored_model,
            timestamp=pushed.timestamp or self.now,
            content_type=pushed.content_type or "markdown",
            completion_id=pushed.completion_id or "",
            elapsed_ms=pushed.elapsed_ms,
            figures_source=Message.FiguresSource.CLIENT,
            **pushed.tokens,
        )

    def tombstone(self) -> list[dict[str, str]]:
        """Leave a tombstone for each deleted id that names a live conversation; the others are unchanged."""
        answers = []
        for conv_id in self.deleted:
            conv = self.existing.get(conv_id)
            if conv is None or conv.deleted_at is not None:
                answers.append({"id": conv_id, "status": "unchanged"})
                continue
            conv.deleted_at = self.now
            conv.updated_at = self.now
            self.fields_changed.update({"deleted_at", "updated_at"})
            self._touch(conv)
            answers.append({"id": conv_id, "status": "deleted"})
        return answers

    def write(self) -> int:
        """Tick the clock once and write every change stamped with its version; returns the version."""
        version = sync_clock.tick(self.user.pk)
        self._insert_messages(version)
        if self.to_update:
            for message in self.to_update:
                message.version = version
            Message.objects.bulk_update(self.to_update, sorted(self.update_fields | {"version"}), batch_size=INSERT_BATCH)
        derive_totals(list(self.touched.values()))
        delete_for_conversations([c.pk for c in self.touched.values() if c.deleted_at is not None])
        for conv in self.touched.values():
            conv.version = version
            if conv.last_message_at and conv.last_message_at > conv.updated_at:
                conv.updated_at = conv.last_message_at
        # An upsert on the primary key writes every touched row in one statement per batch;
        # bulk_update's CASE per field is many times slower for a thousand rows.
        Conversation.objects.bulk_create(
            list(self.touched.values()),
            batch_size=INSERT_BATCH,
            update_conflicts=True,
            unique_fields=["id"],
            update_fields=sorted(set(TOTAL_FIELDS) | self.fields_changed | {"version", "updated_at"}),
        )
        return version

    def _insert_messages(self, version: int) -> None:
        # User messages first, so an answer in the same body can point at its question's row.
        by_public_id = {m.public_id: m for m in self.stored.values()}
        questions = [m for m, _ in self.to_create if m.role == Message.Role.USER]
        others = [(m, ref) for m, ref in self.to_create if m.role != Message.Role.USER]
        for message in questions:
            message.version = version
        Message.objects.bulk_create(questions, batch_size=INSERT_BATCH)
        by_public_id.update({m.public_id: m for m in questions})
        for message, ref in others:
            message.version = version
            if ref:
                message.user_message_id = by_public_id[ref].pk
        Message.objects.bulk_create([m for m, _ in others], batch_size=INSERT_BATCH)

    def _touch(self, conv: Conversation, status: str = "updated") -> None:
        """Mark the conversation's row for writing; a pushed one's answer says `status`, or stays `created`."""
        self.touched[conv.public_id] = conv
        result = self.results.get(conv.public_id)
        if result is not None and result["status"] != "created":
            result["status"] = status


def _stored_conversations(user, public_ids: list[str]) -> dict[str, Conversation]:
    found: dict[str, Conversation] = {}
    for chunk in chunks(public_ids):
        found.update((c.public_id, c) for c in Conversation.objects.filter(owner=user, public_id__in=chunk))
    return found


def _stored_messages(user, public_ids: set[str]) -> dict[str, Message]:
    found: dict[str, Message] = {}
    for chunk in chunks(sorted(public_ids)):
        found.update((m.public_id, m) for m in Message.objects.filter(owner=user, public_id__in=chunk))
    return found


def _client_changes(known: Message, pushed: SyncMessage, stored: dict[str, Message]) -> list[str]:
    """Set on `known` what the client may still fill in; the server's own messages keep everything."""
    # Only messages a client brought in are the client's to fill in; one the server made
    # (settled, or still streaming with its figures to come) keeps the server's fields.
    if known.figures_source != Message.FiguresSource.CLIENT:
        return []
    candidates: dict[str, Any] = dict(pushed.tokens)
    candidates["model"] = pushed.stored_model or None
    candidates["completion_id"] = pushed.completion_id or None
    candidates["elapsed_ms"] = pushed.elapsed_ms
    candidates["content_type"] = pushed.content_type or None
    if pushed.user_message_id:
        target = stored.get(pushed.user_message_id)
        # A question pushed in this same body is created later; link it only when it is stored.
        candidates["user_message_id"] = target.pk if target is not None else None
    changed: list[str] = []
    for name, value in candidates.items():
        if value is None or name not in CLIENT_OWNED_MESSAGE_FIELDS:
            continue
        if getattr(known, name) != value:
            setattr(known, name, value)
            changed.append(name)
    return changed
