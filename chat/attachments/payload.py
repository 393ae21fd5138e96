"""An attachment as the API shows it (API.md "Attachments"), without its text."""

from __future__ import annotations

from typing import Any

from chat.attachments.models import Attachment
from chat.payloads import iso


def attachment_payload(attachment: Attachment) -> dict[str, Any]:
    """The contract's fields for both kinds (`bytes` of a page is what was fetched; `url` and
    `fetched_at` are null for a file), plus `format`: what the text was read as."""
    return {
        "id": attachment.public_id,
        "kind": attachment.kind,
        "name": attachment.name,
        "bytes": attachment.bytes,
        "tokens": attachment.tokens,
        "format": attachment.format,
        "url": attachment.url or None,
        "created_at": iso(attachment.created_at),
        "fetched_at": iso(attachment.fetched_at),
    }
