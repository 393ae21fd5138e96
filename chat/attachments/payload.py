"""An attachment as the API shows it (API.md "Attachments"), without its text: the payload and
its schema (the REST doors' answers, and the sync pull's `attachments` when a client asks)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from chat.attachments.models import Attachment
from chat.models import chunks
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


class AttachmentSerializer(serializers.Serializer):
    id = serializers.CharField()
    kind = serializers.ChoiceField(choices=["file", "url"])
    name = serializers.CharField()
    bytes = serializers.IntegerField()
    tokens = serializers.IntegerField()
    format = serializers.CharField(allow_blank=True)
    url = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    fetched_at = serializers.DateTimeField(allow_null=True)


def attachments_by_conversation(conversation_pks: list[int]) -> dict[int, list[dict[str, Any]]]:
    """The payloads of these conversations' attachments, oldest first, by conversation pk. Read only."""
    found: dict[int, list[dict[str, Any]]] = {pk: [] for pk in conversation_pks}
    for chunk in chunks(conversation_pks):
        for attachment in (Attachment.objects.filter(conversation_id__in=chunk).defer("text")
                           .order_by("conversation_id", "created_at", "pk")):
            found[attachment.conversation_id].append(attachment_payload(attachment))
    return found
