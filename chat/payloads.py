"""The contract's JSON shapes for stored objects, shared by every door and the REST API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from chat.markdown import render_markdown
from chat.models import Message


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with milliseconds and a Z, as the mobile client writes them."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def money(value) -> str | None:
    return None if value is None else str(value)


def message_payload(message: Message, *, with_html: bool = False) -> dict[str, Any]:
    """A stored message object (API.md "Stored message objects carry")."""
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
    }
    if with_html:
        data["content_html"] = render_markdown(message.content)
    return data
