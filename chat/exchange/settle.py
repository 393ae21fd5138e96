"""Settling: whatever ended an exchange, its usage row, messages, conversation totals, budget and
hold are written in ONE transaction, exactly once.

`SettleTarget` names the rows one exchange settles; a live stream has it from the moment it was
prepared, a restart's sweep builds it from the usage row (`SettleTarget.of`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from chat import sync_clock
from chat.models import USAGE_FIELDS, Conversation, Message, preview_of
from chat.providers import base
from chat.providers.base import ChatRequest, Usage
from chatlima.formats import quantize_money
from chatlima.rows import update_returning, update_where
from usage import budgets
from usage.models import ApiUsageLog, Budget, BudgetReservation
from usage.pricing import cost_of
from usage.signals import exchange_settled

S = ApiUsageLog.Status
# usage.source -> (the usage row's usage_source, the messages' figures_source)
FIGURES_SOURCE = {
    "provider": (ApiUsageLog.Source.PROVIDER, Message.FiguresSource.PROVIDER),
    "estimate": (ApiUsageLog.Source.ESTIMATE, Message.FiguresSource.ESTIMATE),
    "none": (ApiUsageLog.Source.NONE, Message.FiguresSource.NONE),
}
MESSAGE_STATUS_FOR = {
    S.SUCCESS: Message.Status.COMPLETE, S.ERROR: Message.Status.ERROR, S.TIMEOUT: Message.Status.ERROR,
    S.RATE_LIMITED: Message.Status.ERROR, S.CANCELLED: Message.Status.CANCELLED,
    S.INTERRUPTED: Message.Status.INTERRUPTED,
}


@dataclass
class Outcome:
    """How an exchange ended: its status, the text that arrived, and what it is charged."""

    status: str
    text: str
    usage: Usage
    response_time_ms: int | None = None
    time_to_first_token_ms: int | None = None
    error_code: str = ""
    error_message: str = ""
    retries: int = 0
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SettleTarget:
    """The rows one exchange settles, known from the moment it was prepared."""

    usage_log_id: Any
    user_id: int
    model: str
    request_id: str
    provider: str
    reservation_id: int | None
    held_tokens: int | None
    held_cost: Decimal | None
    assistant_pk: int
    assistant_public_id: str
    assistant_timestamp: datetime
    user_message_pk: int | None
    conversation_pk: int
    metadata: dict = field(default_factory=dict)
    # A regeneration (chat/exchange/versions.py): its prompt is added to the question's prompt_tokens
    # rather than written over them, and the question's id is not the request id.
    adds_prompt: bool = False
    user_message_public_id: str | None = None
    replaces_public_id: str | None = None

    @classmethod
    def of(cls, row: ApiUsageLog) -> SettleTarget:
        """The target of a pending usage row read with its `message` (the hold's size unknown)."""
        assistant = row.message
        metadata = row.metadata or {}
        return cls(
            usage_log_id=row.pk, user_id=row.user_id, model=row.model_name, request_id=row.request_id,
            provider=row.provider, reservation_id=(row.metadata or {}).get("reservation_id"), held_tokens=None,
            held_cost=None, assistant_pk=row.message_id, assistant_public_id=assistant.public_id,
            assistant_timestamp=assistant.timestamp, user_message_pk=assistant.user_message_id,
            conversation_pk=row.conversation_id, metadata=dict(metadata),
            adds_prompt=bool(metadata.get("regenerates")), user_message_public_id=metadata.get("question_id"),
            replaces_public_id=metadata.get("regenerates"),
        )


@dataclass(frozen=True)
class Settled:
    """One exchange as its settle wrote it (the rows are built from what was written, not read back)."""

    usage: Usage
    cost: Decimal | None
    actual: Decimal | None
    assistant: Message
    user_message: Message | None
    conversation: Conversation  # its usage figures only
    budget: Budget


def charged_usage(request: ChatRequest, text: str, reasoning_text: str = "") -> Usage:
    """What an exchange the provider reported no usage for is charged: the estimate of the prompt
    and of the output that really arrived; nothing at all when no output arrived (API.md: nothing is
    charged that the provider did not bill)."""
    if not text and not reasoning_text:
        return base.unbilled_usage()
    return base.estimate_usage(request, text, reasoning_text=reasoning_text)


def _money(value: Decimal | None) -> Decimal | None:
    """Money as the columns store it (8 places), so an event shows exactly what a later read returns."""
    return None if value is None else quantize_money(value)


# A literal statement: the ORM's update() with these F() expressions costs 1.1 ms of CPU per call,
# this 0.3 ms (PostgreSQL; chat/exchange/__init__.py has the figures). The NOT NULL totals add
# plainly; actual_cost is NULL until some answer reports one, and COALESCE(NULL + x, NULL, x) is x.
ADD_TO_CONVERSATION = (
    "UPDATE chat_conversation SET input_tokens = input_tokens + %s, output_tokens = output_tokens + %s, "
    "total_tokens = total_tokens + %s, reasoning_tokens = reasoning_tokens + %s, "
    "cached_tokens = cached_tokens + %s, estimated_cost = estimated_cost + %s, "
    "actual_cost = COALESCE(actual_cost + %s, actual_cost, %s), version = %s, updated_at = %s, "
    "last_message_preview = COALESCE(%s, last_message_preview) WHERE id = %s"
)


def add_to_conversation(conversation_pk: int, usage: Usage, cost: Decimal | None, actual: Decimal | None,
                        version: int, preview: str | None) -> Conversation:
    """Move a conversation's running totals by exactly one exchange's figures (the sums
    `Conversation.recompute_totals()` derives) and stamp it; a None `preview` keeps the last one.
    Runs in the caller's transaction and takes the conversation's row lock to its commit. Returns
    the conversation's usage figures (USAGE_FIELDS) as the update left them (RETURNING)."""
    params = [
        usage.prompt_tokens, usage.completion_tokens, usage.total_tokens, usage.reasoning_tokens,
        usage.cached_tokens, cost or Decimal("0"), actual, actual, version,
        connection.ops.adapt_datetimefield_value(timezone.now()), preview, conversation_pk,
    ]
    return update_returning(Conversation, ADD_TO_CONVERSATION, params, ("id", *USAGE_FIELDS))


def _add_to_question(pk: int, usage: Usage, figures: str, version: int) -> tuple[int, str]:
    """A regeneration's prompt tokens added to its question's (which then show what the question
    cost over all its sends; `derive_totals` sums them as input). The figures' source says
    `estimate` once any send was estimated; an unbilled send (`none`) changes neither. Runs in the
    settle's transaction; the UPDATE takes the question's row lock. Returns the new sum and source."""
    question = Message.objects.select_for_update().values("prompt_tokens", "figures_source").get(pk=pk)
    source = question["figures_source"]
    if figures != Message.FiguresSource.NONE and source != Message.FiguresSource.ESTIMATE:
        source = figures
    total = (question["prompt_tokens"] or 0) + usage.prompt_tokens
    Message.objects.filter(pk=pk).update(prompt_tokens=total, figures_source=source, version=version)
    return total, source


def settle_exchange(target: SettleTarget, outcome: Outcome) -> Settled | None:
    """Finish one exchange in ONE transaction; returns what was written, or None if already settled.

    The usage row's move out of `pending` is a compare-and-set, so a live settle and a restart's
    `interrupted` settle can never both count the same exchange. Writes are plain UPDATEs (no
    read-modify-write; the single-row ones through `chatlima.rows`, which skips the ORM's
    compiling); lock order is the usage row, the budget row, then the sync clock, the same order
    `prepare_exchange` takes the budget and the clock.
    """
    usage = outcome.usage
    cost = _money(cost_of(target.model, usage))
    actual = _money(usage.actual_cost)
    source, figures = FIGURES_SOURCE[usage.source]
    extra = {"retries": outcome.retries, "finish_reason": usage.finish_reason, **outcome.extra}
    if outcome.error_code:
        extra["error_code"] = outcome.error_code
    figures_of_row = dict(
        status=outcome.status, prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens, cached_tokens=usage.cached_tokens,
        reasoning_tokens=usage.reasoning_tokens, cost_estimate=cost, actual_cost=actual,
        response_time_ms=outcome.response_time_ms, time_to_first_token_ms=outcome.time_to_first_token_ms,
        usage_source=source, error_message=outcome.error_message[:2000],
        metadata={**target.metadata, **extra}, settled_at=timezone.now(),
    )
    with transaction.atomic():
        if not update_where(ApiUsageLog, figures_of_row, pk=target.usage_log_id, status=S.PENDING):
            return None
        budget = budgets.settle_reservation(
            target.user_id, target.reservation_id, usage.total_tokens,
            actual if actual is not None else cost,
            state=BudgetReservation.State.SETTLED if outcome.status == S.SUCCESS else BudgetReservation.State.RELEASED,
            held_tokens=target.held_tokens, held_cost=target.held_cost,
        )
        version = sync_clock.tick(target.user_id)
        figures_of_answer = dict(
            version=version,
            content=outcome.text, status=MESSAGE_STATUS_FOR[outcome.status],
            completion_tokens=usage.completion_tokens, total_tokens=usage.total_tokens,
            reasoning_tokens=usage.reasoning_tokens, cached_tokens=usage.cached_tokens,
            completion_id=usage.completion_id[:255], elapsed_ms=outcome.response_time_ms, cost=cost,
            actual_cost=actual, figures_source=figures,
        )
        update_where(Message, figures_of_answer, pk=target.assistant_pk)
        prompt_tokens = usage.prompt_tokens
        if target.user_message_pk and target.adds_prompt:
            prompt_tokens, figures = _add_to_question(target.user_message_pk, usage, figures, version)
        elif target.user_message_pk:
            update_where(Message, {"prompt_tokens": usage.prompt_tokens, "figures_source": figures, "version": version},
                         pk=target.user_message_pk)
        conversation = add_to_conversation(target.conversation_pk, usage, cost, actual, version,
                                           preview_of(outcome.text) if outcome.text else None)
        # The usage row as just written, for the listeners: nothing is read back.
        settled_row = ApiUsageLog(
            pk=target.usage_log_id, request_id=target.request_id, user_id=target.user_id,
            conversation_id=target.conversation_pk, message_id=target.assistant_pk, provider=target.provider,
            model_name=target.model, **figures_of_row,
        )
        transaction.on_commit(lambda: exchange_settled.send(
            sender=ApiUsageLog, user_id=settled_row.user_id, usage_log_id=settled_row.pk, usage_log=settled_row,
            budget=budget,
        ))

    assistant = Message(
        pk=target.assistant_pk, owner_id=target.user_id, conversation_id=target.conversation_pk,
        public_id=target.assistant_public_id, role=Message.Role.ASSISTANT, model=target.model,
        timestamp=target.assistant_timestamp, user_message_id=target.user_message_pk, **figures_of_answer,
    )
    assistant.replaces_public_id = target.replaces_public_id
    user_message = None
    if target.user_message_pk:
        user_message = assistant.user_message = Message(
            pk=target.user_message_pk, public_id=target.user_message_public_id or target.request_id,
            role=Message.Role.USER, prompt_tokens=prompt_tokens, figures_source=figures,
        )
    return Settled(usage=usage, cost=cost, actual=actual, assistant=assistant, user_message=user_message,
                   conversation=conversation, budget=budget)
