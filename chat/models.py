"""Conversations and their messages, with the running token totals they carry."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from chat.ids import new_conversation_id, new_message_id, validate_public_id
from chatlima.formats import money_str

PREVIEW_CHARS = 100


class ConversationQuerySet(models.QuerySet):
    def for_user(self, user) -> ConversationQuerySet:
        """The user's live conversations; deleted ones are tombstones kept for sync."""
        return self.filter(owner=user, deleted_at__isnull=True)


class Conversation(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    public_id = models.CharField(max_length=64, default=new_conversation_id, validators=[validate_public_id])
    title = models.CharField(max_length=255, blank=True)
    model = models.CharField(max_length=128, blank=True)
    system_prompt = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)
    # Stamped from the owner's sync clock on every write, so a pull cursor never misses one.
    version = models.BigIntegerField(default=0)

    # Running totals: sums over this conversation's messages.
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    total_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    estimated_cost = models.DecimalField(max_digits=16, decimal_places=8, default=Decimal("0"))
    actual_cost = models.DecimalField(max_digits=16, decimal_places=8, null=True, blank=True)
    message_count = models.IntegerField(default=0)
    last_message_preview = models.CharField(max_length=PREVIEW_CHARS + 3, blank=True)
    last_message_at = models.DateTimeField(null=True, blank=True)
    last_model = models.CharField(max_length=128, blank=True)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "public_id"], name="conversation_id_unique_per_user"),
        ]
        indexes = [
            models.Index(fields=["owner", "-updated_at"]),
            models.Index(fields=["owner", "version"]),
        ]

    def __str__(self) -> str:
        return self.title or self.public_id

    def recompute_totals(self, save: bool = True) -> None:
        """Derive the running totals from the messages (the rule every write path keeps).

        Input is what the user messages cost as prompts; output, reasoning, cached,
        total and cost are the assistant messages' figures.
        """
        live = self.messages.all()
        user_sums = live.filter(role=Message.Role.USER).aggregate(i=Coalesce(Sum("prompt_tokens"), 0))
        a = live.filter(role=Message.Role.ASSISTANT).aggregate(
            o=Coalesce(Sum("completion_tokens"), 0),
            t=Coalesce(Sum(Coalesce("total_tokens", "completion_tokens")), 0),
            r=Coalesce(Sum("reasoning_tokens"), 0),
            c=Coalesce(Sum("cached_tokens"), 0),
            cost=Coalesce(Sum("cost"), Decimal("0"), output_field=models.DecimalField()),
            actual=Sum("actual_cost"),
        )
        last = live.order_by("-timestamp", "-pk").first()
        self.input_tokens = user_sums["i"]
        self.output_tokens = a["o"]
        self.total_tokens = a["t"]
        self.reasoning_tokens = a["r"]
        self.cached_tokens = a["c"]
        self.estimated_cost = a["cost"]
        self.actual_cost = a["actual"]
        self.message_count = live.count()
        self.last_message_preview = preview_of(last.content) if last else ""
        self.last_message_at = last.timestamp if last else None
        self.last_model = (last.model if last else "") or self.model
        if save:
            self.save(update_fields=TOTAL_FIELDS)

    def usage_dict(self) -> dict[str, Any]:
        """`conversation_usage` of the contract."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cached_tokens": self.cached_tokens,
            "cost": money_str(self.estimated_cost),
            "message_count": self.message_count,
        }


# What `Conversation.usage_dict()` reads.
USAGE_FIELDS = ["input_tokens", "output_tokens", "total_tokens", "reasoning_tokens", "cached_tokens",
                "estimated_cost", "message_count"]
TOTAL_FIELDS = [
    "input_tokens", "output_tokens", "total_tokens", "reasoning_tokens", "cached_tokens",
    "estimated_cost", "actual_cost", "message_count", "last_message_preview", "last_message_at", "last_model",
]


def preview_of(content: str) -> str:
    return content if len(content) <= PREVIEW_CHARS else content[:PREVIEW_CHARS] + "..."


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"
        SYSTEM = "system"

    class Status(models.TextChoices):
        STREAMING = "streaming"
        COMPLETE = "complete"
        CANCELLED = "cancelled"
        ERROR = "error"
        INTERRUPTED = "interrupted"

    class FiguresSource(models.TextChoices):
        PROVIDER = "provider"
        ESTIMATE = "estimate"
        CLIENT = "client"
        NONE = "none"  # a failed call the provider did not bill

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="messages")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    public_id = models.CharField(max_length=64, default=new_message_id, validators=[validate_public_id])
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    model = models.CharField(max_length=128, blank=True)
    timestamp = models.DateTimeField(default=timezone.now)
    content_type = models.CharField(max_length=32, default="markdown")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    total_tokens = models.PositiveIntegerField(null=True, blank=True)
    reasoning_tokens = models.PositiveIntegerField(null=True, blank=True)
    cached_tokens = models.PositiveIntegerField(null=True, blank=True)
    user_message = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="answers"
    )
    completion_id = models.CharField(max_length=255, blank=True)
    elapsed_ms = models.PositiveIntegerField(null=True, blank=True)
    cost = models.DecimalField(max_digits=16, decimal_places=8, null=True, blank=True)
    actual_cost = models.DecimalField(max_digits=16, decimal_places=8, null=True, blank=True)
    figures_source = models.CharField(max_length=16, choices=FiguresSource.choices, blank=True)
    version = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    # While an answer streams: when its server last saved it (see chat.partials). A pending exchange
    # whose heartbeat has stopped belongs to a server that is gone.
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "public_id"], name="message_id_unique_per_user"),
        ]
        indexes = [
            models.Index(fields=["conversation", "timestamp"]),
            models.Index(fields=["owner", "version"]),
        ]
        ordering = ["timestamp", "pk"]

    def __str__(self) -> str:
        return f"{self.role} {self.public_id}"

    @property
    def elapsed_time(self) -> int | None:
        """Whole seconds, as the contract reports it."""
        return None if self.elapsed_ms is None else round(self.elapsed_ms / 1000)


class SyncClock(models.Model):
    """A per-user version counter; writers bump it under a row lock and stamp what they change."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="sync_clock")
    version = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"sync clock of {self.user_id} at {self.version}"
