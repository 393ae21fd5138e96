"""The contract's JSON shapes for stored objects, shared by every door and the REST API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from chat.markdown import render_markdown
from chat.models import Message
from chatlima.formats import money_str


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with milliseconds and a Z, as the mobile client writes them."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


money = money_str


def replaces_id(message: Message) -> str | None:
    """The public id of the message this one replaces (chat/exchange/versions.py), from the
    `replaces_public_id` a queryset annotated or a settle set, else from the relation."""
    if hasattr(message, "replaces_public_id"):
        return message.replaces_public_id
    return message.replaces.public_id if message.replaces_id else None


def message_payload(message: Message, *, with_html: bool = False) -> dict[str, Any]:
    """A stored message object (API.md "Stored message objects carry"), plus its place among versions:
    `superseded` (a regeneration or an edit took it out of the live thread) and `replaces` (the id of
    the message it is a new version of, or null)."""
    data: dict[str, Any] = {
        "id": message.public_id,
        "role": message.role,
        "content": message.content,
        "timestamp": iso(message.timestamp),
        "model": message.model,
        "status": message.status,
        "contentType": message.content_type,
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "total_tokens": message.total_tokens,
        "reasoning_tokens": message.reasoning_tokens,
        "cached_tokens": message.cached_tokens,
        "user_message_id": message.user_message.public_id if message.user_message_id else None,
        "completion_id": message.completion_id,
        "elapsed_time": message.elapsed_time,
        "cost": money(message.cost),
        "figures_source": message.figures_source,
        "superseded": message.superseded_at is not None,
        "replaces": replaces_id(message),
    }
    if with_html:
        data["content_html"] = render_markdown(message.content)
    return data


def sync_message_payload(message: Message) -> dict[str, Any]:
    """A message in the mobile client's sync format (seed 000) with every token field.

    Reads `user_message_public_id` and `replaces_public_id` when the queryset annotated them, so a
    page of messages costs no query per answer. `superseded` and `replaces` are the server's
    (chat/exchange/versions.py); a push's are ignored.
    """
    if hasattr(message, "user_message_public_id"):
        user_message_id = message.user_message_public_id
    else:
        user_message_id = message.user_message.public_id if message.user_message_id else None
    data: dict[str, Any] = {
        "id": message.public_id,
        "role": message.role,
        "content": message.content,
        "timestamp": iso(message.timestamp),
        "contentType": message.content_type,
        "status": message.status,
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "total_tokens": message.total_tokens,
        "reasoning_tokens": message.reasoning_tokens,
        "cached_tokens": message.cached_tokens,
        "figures_source": message.figures_source,
        "superseded": message.superseded_at is not None,
        "replaces": replaces_id(message),
    }
    if message.role == Message.Role.USER:
        data["originalModel"] = message.model
    else:
        data.update(
            {
                "model": message.model,
                "elapsed_time": message.elapsed_time,
                "user_message_id": user_message_id,
                "completion_id": message.completion_id,
                "cost": decimal_str(message.cost),
            }
        )
    return data


def conversation_payload(conversation) -> dict[str, Any]:
    """A conversation in the REST API's list (API.md "Conversations")."""
    return {
        "id": conversation.public_id,
        "title": conversation.title,
        "model": conversation.model,
        "system_prompt": conversation.system_prompt,
        "temperature": conversation.temperature,
        "max_tokens": conversation.max_tokens,
        "created_at": iso(conversation.created_at),
        "updated_at": iso(conversation.updated_at),
        "last_message_at": iso(conversation.last_message_at),
        "last_message_preview": conversation.last_message_preview,
        "conversation_usage": {**conversation.usage_dict(), "cost": decimal_str(conversation.estimated_cost)},
    }


decimal_str = money_str
