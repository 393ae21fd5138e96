"""Conversation writes of the REST API: create, rename, re-prompt or re-set, delete.

Each runs in its own transaction, takes the owner's sync clock lock first (the per-user writer
mutex, as a push does) and stamps what it changes with the clock's next version, so a pull on
any device sees the change.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from chat import sync_clock
from chat.attachments.store import delete_for_conversations
from chat.models import Conversation
from chatlima.errors import ClientError


def create_conversation(user, *, public_id: str | None, title: str = "", model: str = "", system_prompt: str = "",
                        temperature: float | None = None, max_tokens: int | None = None) -> tuple[Conversation, bool]:
    """Create the user's conversation, or return the live one with that id (a retried POST is safe)."""
    with transaction.atomic():
        sync_clock.lock(user.pk)
        if public_id:
            found = Conversation.objects.filter(owner=user, public_id=public_id).first()
            if found is not None and found.deleted_at is None:
                return found, False
            if found is not None:
                raise ClientError(
                    "INVALID_MESSAGE", "This id belonged to a conversation you deleted; choose another.", {"id": "deleted"}
                )
        now = timezone.now()
        conv = Conversation(owner=user, title=title, model=model, system_prompt=system_prompt, temperature=temperature,
                            max_tokens=max_tokens, created_at=now, updated_at=now)
        if public_id:
            conv.public_id = public_id
        conv.version = sync_clock.tick(user.pk)
        conv.last_model = model
        conv.save()
        return conv, True


def update_conversation(conv: Conversation, changes: dict[str, Any]) -> Conversation:
    """PATCH title, model, system_prompt, temperature or max_tokens (None clears those two, back to
    the defaults); a real change moves the sync clock, and the next send uses what was saved."""
    with transaction.atomic():
        sync_clock.lock(conv.owner_id)
        conv = Conversation.objects.select_for_update().get(pk=conv.pk)
        changed = [name for name, value in changes.items() if getattr(conv, name) != value]
        if not changed:
            return conv
        for name in changed:
            setattr(conv, name, changes[name])
        conv.updated_at = timezone.now()
        conv.version = sync_clock.tick(conv.owner_id)
        conv.save(update_fields=[*changed, "updated_at", "version"])
        return conv


def delete_conversation(conv: Conversation) -> None:
    """Leave a tombstone, so every device learns of the delete on its next pull; its attachments are deleted."""
    with transaction.atomic():
        sync_clock.lock(conv.owner_id)
        now = timezone.now()
        conv.deleted_at = now
        conv.updated_at = now
        conv.version = sync_clock.tick(conv.owner_id)
        conv.save(update_fields=["deleted_at", "updated_at", "version"])
        delete_for_conversations([conv.pk])  # its files and URLs go with it
