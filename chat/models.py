"""Conversations and their messages, with the running token totals they carry."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Count, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from chat.ids import new_conversation_id, new_message_id, validate_public_id
from chatlima.formats import money_str

PREVIEW_CHARS = 100
# A conversation's settings, as the send body takes them (chat/exchange/body.py).
TEMPERATURE_MAX = 2
MAX_TOKENS_LIMIT = 1_000_000


class ConversationQuerySet(models.QuerySet):
    def for_user(self, user) -> ConversationQuerySet:
        """The user's live conversations; deleted ones are tombstones kept for sync."""
        return self.filter(owner=user, deleted_at__isnull=True)


class Conversation(models.Model):
    # No index of its own: the indexes below and `conversation_id_unique_per_user` lead with the owner.
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations",
                              db_index=False)
    public_id = models.CharField(max_length=64, default=new_conversation_id, validators=[validate_public_id])
    title = models.CharField(max_length=255, blank=True)
    model = models.CharField(max_length=128, blank=True)
    system_prompt = models.TextField(blank=True)
    # The answer's settings; null: the provider's default temperature, CHATLIMA_DEFAULT_MAX_TOKENS.
    # A send's own `temperature` / `max_tokens` win over these (chat/exchange/prepare.py).
    temperature = models.FloatField(null=True, blank=True,
                                    validators=[MinValueValidator(0), MaxValueValidator(TEMPERATURE_MAX)])
    max_tokens = models.PositiveIntegerField(null=True, blank=True,
                                             validators=[MinValueValidator(1), MaxValueValidator(MAX_TOKENS_LIMIT)])
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
        """Derive the running totals from the messages (`derive_totals`); save them unless told not to."""
        derive_totals([self])
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


def answer_settings(conversation: Conversation | None, temperature: float | None,
                    max_tokens: int | None) -> tuple[float | None, int]:
    """The temperature and max_tokens an answer is asked with: the send's own, else the
    conversation's, else the defaults (None: the provider's own temperature;
    CHATLIMA_DEFAULT_MAX_TOKENS). Pure: no query, no lock."""
    if temperature is None and conversation is not None:
        temperature = conversation.temperature
    if max_tokens is None and conversation is not None:
        max_tokens = conversation.max_tokens
    return temperature, max_tokens or settings.CHATLIMA_DEFAULT_MAX_TOKENS


# What `Conversation.usage_dict()` reads.
USAGE_FIELDS = ["input_tokens", "output_tokens", "total_tokens", "reasoning_tokens", "cached_tokens",
                "estimated_cost", "message_count"]
TOTAL_FIELDS = [
    "input_tokens", "output_tokens", "total_tokens", "reasoning_tokens", "cached_tokens",
    "estimated_cost", "actual_cost", "message_count", "last_message_preview", "last_message_at", "last_model",
]


def preview_of(content: str) -> str:
    return content if len(content) <= PREVIEW_CHARS else content[:PREVIEW_CHARS] + "..."


# IN (...) lists stay under every backend's parameter limit.
CHUNK = 900


def chunks(values: list, size: int = CHUNK) -> Iterator[list]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def derive_totals(conversations: list[Conversation]) -> None:
    """The running totals rule, for any number of conversations in a bounded number of queries.

    Input is what the user messages cost as prompts; output, reasoning, cached, total (the
    completion when a message has no total) and cost are the assistant messages' figures; the
    count, time and model are of all messages, the newest last; the preview is the newest message
    with text (the answer once there is one: an answer that ended with no text leaves the question),
    as `chat.exchange.settle.add_to_conversation` keeps it after each exchange. Sets TOTAL_FIELDS in
    memory and saves nothing. It takes no lock: call it in the writer's transaction, after the
    message writes, and save what it set there.
    """
    by_pk = {c.pk: c for c in conversations}
    sums: dict[int, dict[str, Any]] = {}
    newest: dict[int, Message] = {}
    newest_text: dict[int, str] = {}
    user = Q(role=Message.Role.USER)
    assistant = Q(role=Message.Role.ASSISTANT)
    for chunk in chunks(list(by_pk)):
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
        sums.update((row["conversation_id"], row) for row in rows)
        in_order = Message.objects.filter(conversation_id=OuterRef("pk")).order_by("-timestamp", "-pk")
        last_pks = Conversation.objects.filter(pk__in=chunk).annotate(
            last_pk=Subquery(in_order.values("pk")[:1]), text_pk=Subquery(in_order.exclude(content="").values("pk")[:1]),
        ).values_list("last_pk", "text_pk")
        last_pks = list(last_pks)
        for message in Message.objects.filter(pk__in=[pk for pk, _ in last_pks if pk]).only(
            "conversation_id", "timestamp", "model"
        ):
            newest[message.conversation_id] = message
        texts = Message.objects.filter(pk__in=[pk for _, pk in last_pks if pk]).values_list("conversation_id", "content")
        newest_text.update(texts)
    for pk, conv in by_pk.items():
        row = sums.get(pk) or {"i": 0, "o": 0, "t": 0, "r": 0, "c": 0, "cost": Decimal("0"), "actual": None, "n": 0}
        last_message = newest.get(pk)
        conv.input_tokens = row["i"]
        conv.output_tokens = row["o"]
        conv.total_tokens = row["t"]
        conv.reasoning_tokens = row["r"]
        conv.cached_tokens = row["c"]
        conv.estimated_cost = row["cost"]
        conv.actual_cost = row["actual"]
        conv.message_count = row["n"]
        conv.last_message_preview = preview_of(newest_text.get(pk, ""))
        conv.last_message_at = last_message.timestamp if last_message else None
        conv.last_model = (last_message.model if last_message else "") or conv.model


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

    # No index of their own: the indexes below and `message_id_unique_per_user` lead with them, and
    # every index is written again by each non-HOT update (a settle's).
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="messages",
                              db_index=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages", db_index=False)
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
    # Versions (chat/exchange/versions.py). Null: the message is in the live thread, the one the
    # provider is sent as history and the page shows. Set when a regeneration or an edit replaced it
    # (every message one such action took out of the thread carries the same moment). What a
    # superseded message cost stays in every total (`derive_totals` sums all messages).
    superseded_at = models.DateTimeField(null=True, blank=True)
    # A regenerated answer -> the answer it replaces; an edited user message -> the one it replaces.
    replaces = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replaced_by"
    )

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
    def superseded(self) -> bool:
        return self.superseded_at is not None

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


# Files and URLs as context live in their own package; imported here so Django registers the model.
from chat.attachments.models import Attachment  # noqa: E402, F401
