"""An attachment: a file or a fetched URL whose text a conversation carries as context.

Its text is extracted once (chat.attachments.extract, chat.attachments.fetch), stored once and
counted once (`tokens`, with `usage.tokens.count_tokens` for `tokens_model`, the conversation's
model when it was counted). The owner's alone: every read goes through `for_user`, and it is
deleted with its conversation (the foreign key cascades; a tombstoned conversation's attachments
are deleted by chat.attachments.store.delete_for_conversations).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from chat.ids import new_id, validate_public_id

NAME_CHARS = 255
URL_CHARS = 2048


def new_attachment_id() -> str:
    return new_id("att")


class AttachmentQuerySet(models.QuerySet):
    def for_user(self, user) -> AttachmentQuerySet:
        """The user's attachments on their live conversations."""
        return self.filter(owner=user, conversation__deleted_at__isnull=True)


class Attachment(models.Model):
    class Kind(models.TextChoices):
        FILE = "file"
        URL = "url"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="attachments")
    conversation = models.ForeignKey("chat.Conversation", on_delete=models.CASCADE, related_name="attachments")
    public_id = models.CharField(max_length=64, default=new_attachment_id, validators=[validate_public_id])
    kind = models.CharField(max_length=8, choices=Kind.choices)
    name = models.CharField(max_length=NAME_CHARS)
    # The file's size as uploaded, or the fetched body's size.
    bytes = models.PositiveBigIntegerField(default=0)
    url = models.CharField(max_length=URL_CHARS, blank=True)
    # What the text was read as: "text", "markdown", "code", "csv", "json", "pdf" or "html".
    format = models.CharField(max_length=16, blank=True)
    text = models.TextField()
    tokens = models.PositiveIntegerField(default=0)
    tokens_model = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    fetched_at = models.DateTimeField(null=True, blank=True)

    objects = AttachmentQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "public_id"], name="attachment_id_unique_per_user"),
        ]
        indexes = [models.Index(fields=["conversation", "created_at"])]
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"
