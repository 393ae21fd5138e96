"""One exchange with a model, behind all three doors (WebSocket, SSE, /send).

`start_exchange(user, body)` does everything that can refuse the request before a stream starts
(validation, conversation lookup, idempotency, model availability, the budget hold) and stores the
user message, a `streaming` assistant message and a `pending` usage row in one transaction. It
raises `ClientError` or returns an object whose `events()` async generator yields API.md's events
in order. Whatever ends the stream (success, provider error, cancel, disconnect, CancelledError),
`events()` settles it in ONE transaction: usage row, both messages, conversation totals, budget and
hold. A stream that never got to settle (server restart) is settled as `interrupted` by
`settle_interrupted_exchanges()`.

Database work runs in short sync functions through `run_db` (a thread pool on PostgreSQL, one
thread on SQLite), never while holding a row lock across an await.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from chat import partials, sync_clock
from chat.ids import ID_RULE, is_valid_id, new_conversation_id, new_message_id
from chat.models import USAGE_FIELDS, Conversation, Message, preview_of
from chat.payloads import message_payload
from chat.providers.base import ChatRequest, ProviderError, Reasoning, Turn, Usage
from chatlima.db import ServiceUnavailable, pool_exhausted
from chatlima.errors import ClientError
from chatlima.formats import money_str
from chatlima.sql import insert_row, update_row
from chatlima.text import is_blank, unstorable_character
from usage import budgets
from usage.models import ApiUsageLog, BudgetReservation
from usage.signals import exchange_settled
from usage.tokens import count_tokens

logger = logging.getLogger(__name__)

S = ApiUsageLog.Status
STATUS_FOR_CODE = {"RATE_LIMITED": S.RATE_LIMITED, "TIMEOUT": S.TIMEOUT, "PROVIDER_ERROR": S.ERROR}
CODE_FOR_STATUS = {
    S.ERROR: "PROVIDER_ERROR", S.TIMEOUT: "TIMEOUT", S.RATE_LIMITED: "RATE_LIMITED",
    S.CANCELLED: "CANCELLED", S.INTERRUPTED: "PROVIDER_ERROR",
}
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
TITLE_CHARS = 60
CONTEXT_PAGE = 50  # history rows read at a time while filling the context's token budget
MONEY_PLACES = Decimal("0.00000001")


async def run_db(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a short sync database function off the event loop.

    On PostgreSQL the thread's connection goes back to the process's pool (chatlima/db.py) as soon
    as `fn` returns: channels' wrapper would close it too, but its test communicator switches that
    off, and a thread that ended holding a pooled connection would keep its slot for good. Waiting
    for a free connection is bounded by `CHATLIMA_DB_POOL_TIMEOUT`; past that this raises
    `ServiceUnavailable` (a ClientError, 503) before `fn` has changed anything.
    """
    def call() -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            if getattr(connection, "pool", None) is not None and not connection.in_atomic_block:
                connection.close()

    sensitive = settings.CHATLIMA_DB_THREAD_SENSITIVE
    try:
        return await database_sync_to_async(call, thread_sensitive=sensitive)()
    except DatabaseError as exc:
        if pool_exhausted(exc):
            raise ServiceUnavailable() from exc
        raise


# --- the request body --------------------------------------------------------------------------


@dataclass(frozen=True)
class SendRequest:
    message: str
    conversation_id: str | None = None
    model: str | None = None
    client_message_id: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    system_prompt: str | None = None


# Send body limits; the schema's SendMessage says the same (chat/serializers.py).
MODEL_ID_CHARS = 128  # Conversation.model's column
SYSTEM_PROMPT_CHARS = 32_000
MAX_TOKENS_LIMIT = 1_000_000


def _invalid(message: str, field_name: str) -> ClientError:
    return ClientError("INVALID_MESSAGE", message, {"field": field_name})


def _storable(value: str, field_name: str) -> str:
    """`value`, or INVALID_MESSAGE naming the field when it holds what no column can store."""
    bad = unstorable_character(value)
    if bad is not None:
        raise _invalid(f"{field_name} must not contain {bad}.", field_name)
    return value


def _optional_text(body: dict, name: str, *, max_chars: int | None = None, blank: bool = True) -> str | None:
    """An optional string field: absent or null is None."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or (not blank and is_blank(value)):
        raise _invalid(f"{name} must be {'text' if blank else 'non-blank text'}.", name)
    if max_chars is not None and len(value) > max_chars:
        raise ClientError("INVALID_MESSAGE", f"{name} is over {max_chars:,} characters.",
                          {"field": name, "max_chars": max_chars})
    return _storable(value, name)


def _seed_messages(messages: Any) -> dict | None:
    """The seed-000 `messages` list, checked entry by entry; its last user entry, if any."""
    if not isinstance(messages, list):
        raise _invalid("messages must be a list.", "messages")
    last_user = None
    for index, entry in enumerate(messages):
        path = f"messages[{index}]"
        if not isinstance(entry, dict):
            raise _invalid(f"{path} must be an object.", path)
        for key in ("role", "content"):
            if entry.get(key) is not None and not isinstance(entry[key], str):
                raise _invalid(f"{path}.{key} must be text.", f"{path}.{key}")
        if entry.get("id") is not None and not is_valid_id(entry["id"]):
            raise _invalid(f"{path}.id: {ID_RULE}", f"{path}.id")
        if entry.get("role") == "user":
            last_user = entry
    return last_user


def parse_send_body(body: Any) -> SendRequest:
    """The contract's send body, or the seed-000 one (`message`, `messages`, `model`).

    Pure validation, no database: every refusal is INVALID_MESSAGE naming the field. A null field
    is an absent one; strings holding NUL or lone surrogates are refused (API.md "Error codes").
    """
    if not isinstance(body, dict):
        raise _invalid("The body must be a JSON object.", "body")
    message = body.get("message")
    client_message_id = body.get("client_message_id")
    if body.get("messages") is not None:
        last = _seed_messages(body["messages"])
        if last is not None:
            if client_message_id is None:
                client_message_id = last.get("id")
            if message is None:
                message = last.get("content")
    if not isinstance(message, str) or is_blank(message):
        raise _invalid("The message is empty.", "message")
    if len(message) > settings.CHATLIMA_MAX_MESSAGE_CHARS:
        raise ClientError(
            "INVALID_MESSAGE", f"The message is over {settings.CHATLIMA_MAX_MESSAGE_CHARS:,} characters.",
            {"field": "message", "max_chars": settings.CHATLIMA_MAX_MESSAGE_CHARS},
        )
    _storable(message, "message")
    for name, value in (("conversation_id", body.get("conversation_id")), ("client_message_id", client_message_id)):
        if value is not None and not is_valid_id(value):
            raise _invalid(f"{name}: {ID_RULE}", name)
    model = _optional_text(body, "model", max_chars=MODEL_ID_CHARS, blank=False)
    temperature = body.get("temperature")
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
            raise _invalid("temperature must be a number from 0 to 2.", "temperature")
        temperature = float(temperature)
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_TOKENS_LIMIT
    ):
        raise _invalid(f"max_tokens must be a whole number from 1 to {MAX_TOKENS_LIMIT}.", "max_tokens")
    system_prompt = _optional_text(body, "system_prompt", max_chars=SYSTEM_PROMPT_CHARS)
    return SendRequest(
        message=message, conversation_id=body.get("conversation_id"), model=model,
        client_message_id=client_message_id, temperature=temperature, max_tokens=max_tokens,
        system_prompt=system_prompt,
    )


# --- shapes ------------------------------------------------------------------------------------


def usage_dict(row: ApiUsageLog) -> dict[str, int]:
    return {
        "prompt_tokens": row.prompt_tokens, "completion_tokens": row.completion_tokens,
        "total_tokens": row.total_tokens, "cached_tokens": row.cached_tokens,
        "reasoning_tokens": row.reasoning_tokens,
    }


def cost_dict(row: ApiUsageLog) -> dict[str, Any]:
    return {
        "estimated": money_str(row.cost_estimate),
        "actual": money_str(row.actual_cost),
        "currency": "USD",
    }


# --- preparing ---------------------------------------------------------------------------------


@dataclass
class Prepared:
    """What a started exchange needs; plain data so it crosses threads safely."""

    user_id: int
    request_id: str
    conversation_id: str
    conversation_pk: int
    user_message_pk: int
    assistant_pk: int
    usage_log_id: Any
    reservation_id: int
    provider: str
    model: str
    chat_request: ChatRequest
    estimated_prompt_tokens: int
    saved_event: dict
    start_event: dict
    target: SettleTarget


@dataclass
class Replay:
    """A `client_message_id` already answered: the stored result, no provider call."""

    events_list: list[dict]

    async def events(self) -> AsyncIterator[dict]:
        for event in self.events_list:
            yield event


def _provider_layer():
    # Imported late: the provider registry reads the price table and settings.
    from chat import providers

    return providers


def _check_model(model: str) -> str:
    providers = _provider_layer()
    name = providers.provider_name_for_model(model)
    if name is None:
        raise ClientError("MODEL_UNAVAILABLE", f"Unknown model {model!r}.", {"model": model})
    if not providers.provider_is_configured(name):
        raise ClientError(
            "MODEL_UNAVAILABLE", f"The model {model!r} is not available: its provider has no key.",
            {"model": model, "provider": name},
        )
    return name


def _in_pages(rows, size: int):
    """A queryset's rows, fetched `size` at a time until the caller stops: plain LIMIT/OFFSET reads,
    since a PostgreSQL server-side cursor costs three round trips for what is usually one page."""
    start = 0
    while True:
        page = list(rows[start:start + size])
        yield from page
        if len(page) < size:
            return
        start += size


def build_context(conversation: Conversation | None, exclude_pk: int | None, model: str) -> tuple[Turn, ...]:
    """Recent history, newest first until the context token budget is spent, returned oldest first."""
    if conversation is None:
        return ()
    budget = settings.CHATLIMA_CONTEXT_TOKEN_BUDGET
    turns: list[Turn] = []
    spent = 0
    recent = (
        conversation.messages.filter(role__in=[Message.Role.USER, Message.Role.ASSISTANT])
        .exclude(status=Message.Status.STREAMING).exclude(content="")
        .order_by("-timestamp", "-pk").values_list("pk", "role", "content")
    )
    for pk, role, content in _in_pages(recent, CONTEXT_PAGE):
        if pk == exclude_pk:
            continue
        cost = count_tokens(content, model)
        if spent + cost > budget:
            break
        spent += cost
        turns.append(Turn(role=role, content=content))
    turns.reverse()
    return tuple(turns)


def _replay_events(user: User, user_message: Message) -> Replay:
    conversation = user_message.conversation
    row = ApiUsageLog.objects.filter(user=user, request_id=user_message.public_id).first()
    answer = user_message.answers.order_by("-pk").first()
    request_id = user_message.public_id
    if row is not None and row.status == S.PENDING:
        raise ClientError(
            "RATE_LIMITED", "This message is still being answered.",
            {"reason": "in_progress", "request_id": request_id},
        )
    events: list[dict] = [
        {"type": "message_saved", "request_id": request_id, "conversation_id": conversation.public_id,
         "message": message_payload(user_message)},
    ]
    if row is not None and row.status != S.SUCCESS:
        code = CODE_FOR_STATUS.get(row.status, "PROVIDER_ERROR")
        events.append({"type": "error", "request_id": request_id, "code": code,
                       "message": row.error_message or f"This message ended as {row.status}.",
                       "details": {"replayed": True, "status": row.status}})
        return Replay(events)
    usage = usage_dict(row) if row is not None else {
        "prompt_tokens": user_message.prompt_tokens or 0,
        "completion_tokens": (answer.completion_tokens or 0) if answer else 0,
        "total_tokens": (answer.total_tokens or 0) if answer else 0,
        "cached_tokens": (answer.cached_tokens or 0) if answer else 0,
        "reasoning_tokens": (answer.reasoning_tokens or 0) if answer else 0,
    }
    cost = cost_dict(row) if row is not None else {
        "estimated": None if answer is None else money_str(answer.cost),
        "actual": None, "currency": "USD",
    }
    events += [
        {"type": "stream_start", "request_id": request_id, "conversation_id": conversation.public_id,
         "model": (answer.model if answer else "") or conversation.model,
         "estimated_prompt_tokens": user_message.prompt_tokens or 0,
         "conversation_usage": conversation.usage_dict(), "replayed": True},
    ]
    if answer is not None and answer.content:
        events.append({"type": "stream_chunk", "request_id": request_id, "chunk": answer.content,
                       "estimated_completion_tokens": usage["completion_tokens"]})
    events += [
        {"type": "stream_end", "request_id": request_id, "usage": usage},
        {"type": "message_complete", "request_id": request_id,
         "user_message": {"id": request_id, "prompt_tokens": user_message.prompt_tokens},
         "message": message_payload(answer, with_html=True) if answer else None,
         "usage": usage, "cost": cost, "conversation_usage": conversation.usage_dict(),
         "budget": budgets.budget_payload(user), "replayed": True},
    ]
    return Replay(events)


def _existing_user_message(user: User, req: SendRequest) -> Message | None:
    if not req.client_message_id:
        return None
    existing = (
        Message.objects.select_related("conversation")
        .filter(owner=user, public_id=req.client_message_id).first()
    )
    if existing is None:
        return None
    if existing.conversation.deleted_at is not None or existing.role != Message.Role.USER or (
        req.conversation_id and existing.conversation.public_id != req.conversation_id
    ):
        raise ClientError(
            "INVALID_MESSAGE", "client_message_id is already used by another message.",
            {"field": "client_message_id"},
        )
    return existing


def prepare_exchange(user: User, req: SendRequest) -> Prepared | Replay:
    """Everything before the provider call; raises ClientError before anything is written."""
    conversation: Conversation | None = None
    if req.conversation_id:
        conversation = Conversation.objects.for_user(user).filter(public_id=req.conversation_id).first()
        if conversation is None:
            raise ClientError("CONVERSATION_NOT_FOUND", "No such conversation.", {"conversation_id": req.conversation_id})

    existing = _existing_user_message(user, req)
    reuse: Message | None = None
    if existing is not None:
        has_row = ApiUsageLog.objects.filter(user=user, request_id=existing.public_id).exists()
        if has_row or existing.answers.exists():
            return _replay_events(user, existing)
        # A user message that arrived by sync and was never answered: answer it now.
        reuse = existing
        conversation = existing.conversation

    model = (req.model or (conversation.model if conversation else "") or settings.CHATLIMA_DEFAULT_MODEL).strip()
    provider = _check_model(model)
    base = _provider_layer_base()
    max_tokens = req.max_tokens or settings.CHATLIMA_DEFAULT_MAX_TOKENS
    system_prompt = conversation.system_prompt if conversation else (req.system_prompt or "")
    chat_request = ChatRequest(
        model=model, message=reuse.content if reuse else req.message, system_prompt=system_prompt,
        history=build_context(conversation, reuse.pk if reuse else None, model),
        temperature=req.temperature, max_tokens=max_tokens,
    )
    estimate = base.estimate_prompt_tokens(chat_request)

    def hold_cost() -> Decimal:
        from usage.pricing import cost_of

        cost = cost_of(model, Usage(prompt_tokens=estimate, completion_tokens=max_tokens,
                                    total_tokens=estimate + max_tokens, source="estimate"))
        return cost or Decimal("0")

    now = timezone.now()
    request_id = reuse.public_id if reuse else (req.client_message_id or new_message_id())
    tokens_held = estimate + max_tokens
    try:
        with transaction.atomic():
            # Lock order for every writer: the budget row (reserve), then the sync clock (tick).
            hold = budgets.reserve(user, request_id, tokens_held, hold_cost)
            version = sync_clock.tick(user.pk)
            added = 1 if reuse else 2
            if conversation is None:
                title = req.message.strip().splitlines()[0][:TITLE_CHARS]
                conversation = insert_row(Conversation(
                    owner=user, public_id=new_conversation_id(), title=title, model=model,
                    system_prompt=req.system_prompt or "", created_at=now, updated_at=now, version=version,
                    message_count=added, last_message_preview=preview_of(req.message), last_message_at=now,
                    last_model=model,
                ))
                before = Conversation(owner=user).usage_dict()
            else:
                before = conversation.usage_dict()
                update_row(Conversation, {"pk": conversation.pk}, add={"message_count": added}, set={
                    "updated_at": now, "version": version, "model": model, "last_message_preview": preview_of(req.message),
                    "last_message_at": now, "last_model": model,
                })
            if reuse is None:
                user_message = insert_row(Message(
                    owner=user, conversation=conversation, public_id=request_id, role=Message.Role.USER,
                    content=req.message, model=model, timestamp=now, version=version,
                ))
            else:
                user_message = reuse
                Message.objects.filter(pk=reuse.pk).update(version=version)
            assistant = insert_row(Message(
                owner=user, conversation=conversation, role=Message.Role.ASSISTANT, content="", model=model,
                timestamp=now + timedelta(microseconds=1), status=Message.Status.STREAMING,
                user_message=user_message, version=version,
            ))
            row = insert_row(ApiUsageLog(
                request_id=request_id, user=user, conversation=conversation, message=assistant,
                provider=provider, model_name=model, status=S.PENDING, created_at=now,
                metadata={"estimated_prompt_tokens": estimate, "max_tokens": max_tokens,
                          "reservation_id": hold.reservation_id},
            ))
    except IntegrityError:
        # Another request stored this client_message_id first: answer as a retry of it.
        existing = _existing_user_message(user, req)
        if existing is None:
            raise
        return _replay_events(user, existing)

    saved = {"type": "message_saved", "request_id": request_id, "conversation_id": conversation.public_id,
             "message": message_payload(user_message)}
    start = {"type": "stream_start", "request_id": request_id, "conversation_id": conversation.public_id,
             "model": model, "estimated_prompt_tokens": estimate, "conversation_usage": before,
             "message_id": assistant.public_id}
    target = SettleTarget(
        usage_log_id=row.pk, user_id=user.pk, model=model, request_id=request_id, provider=provider,
        reservation_id=hold.reservation_id,
        held_tokens=hold.tokens, held_cost=hold.cost, assistant_pk=assistant.pk,
        assistant_public_id=assistant.public_id, assistant_timestamp=assistant.timestamp,
        user_message_pk=user_message.pk, conversation_pk=conversation.pk, metadata=dict(row.metadata),
    )
    return Prepared(
        user_id=user.pk, request_id=request_id, conversation_id=conversation.public_id,
        conversation_pk=conversation.pk, user_message_pk=user_message.pk, assistant_pk=assistant.pk,
        usage_log_id=row.pk, reservation_id=hold.reservation_id, provider=provider, model=model,
        chat_request=chat_request, estimated_prompt_tokens=estimate, saved_event=saved, start_event=start,
        target=target,
    )


def _provider_layer_base():
    from chat.providers import base

    return base


# --- settling ----------------------------------------------------------------------------------


@dataclass
class Outcome:
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

    @classmethod
    def of(cls, row: ApiUsageLog) -> SettleTarget:
        assistant = row.message
        return cls(
            usage_log_id=row.pk, user_id=row.user_id, model=row.model_name, request_id=row.request_id,
            provider=row.provider, reservation_id=(row.metadata or {}).get("reservation_id"), held_tokens=None, held_cost=None,
            assistant_pk=row.message_id, assistant_public_id=assistant.public_id,
            assistant_timestamp=assistant.timestamp, user_message_pk=assistant.user_message_id,
            conversation_pk=row.conversation_id, metadata=dict(row.metadata or {}),
        )


def _money(value: Decimal | None) -> Decimal | None:
    """Money as the columns store it (8 places), so an event shows exactly what a later read returns."""
    return None if value is None else Decimal(value).quantize(MONEY_PLACES)


def settle_exchange(target: SettleTarget, outcome: Outcome) -> dict | None:
    """Finish one exchange in ONE transaction; returns the settled figures, or None if already settled.

    The usage row's move out of `pending` is a compare-and-set, so a live settle and a restart's
    `interrupted` settle can never both count the same exchange. Writes are plain UPDATEs (no
    read-modify-write); lock order is the usage row, the budget row, then the sync clock, the same
    order `prepare_exchange` takes the budget and the clock.
    """
    from usage.pricing import cost_of

    usage = outcome.usage
    cost = _money(cost_of(target.model, usage))
    actual = _money(usage.actual_cost)
    source, figures = FIGURES_SOURCE[usage.source]
    extra = {"retries": outcome.retries, "finish_reason": usage.finish_reason, **outcome.extra}
    if outcome.error_code:
        extra["error_code"] = outcome.error_code
    now = timezone.now()
    figures_of_row = dict(
        status=outcome.status, prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens, cached_tokens=usage.cached_tokens,
        reasoning_tokens=usage.reasoning_tokens, cost_estimate=cost, actual_cost=actual,
        response_time_ms=outcome.response_time_ms, time_to_first_token_ms=outcome.time_to_first_token_ms,
        usage_source=source, error_message=outcome.error_message[:2000],
        metadata={**target.metadata, **extra},
    )
    with transaction.atomic():
        finished = update_row(ApiUsageLog, {"pk": target.usage_log_id, "status": S.PENDING}, set=figures_of_row)
        if not finished:
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
        update_row(Message, {"pk": target.assistant_pk}, set=figures_of_answer)
        if target.user_message_pk:
            update_row(Message, {"pk": target.user_message_pk},
                       set={"prompt_tokens": usage.prompt_tokens, "figures_source": figures, "version": version})
        # Running totals move by exactly this exchange's figures (the sums recompute_totals() derives).
        totals = {
            "input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens, "reasoning_tokens": usage.reasoning_tokens,
            "cached_tokens": usage.cached_tokens, "estimated_cost": cost or Decimal("0"),
        }
        if actual is not None:
            totals["actual_cost"] = actual
        stamps = {"version": version, "updated_at": now}
        if outcome.text:
            stamps["last_message_preview"] = preview_of(outcome.text)
        update_row(Conversation, {"pk": target.conversation_pk}, add=totals, set=stamps)
        conversation = Conversation(**Conversation.objects.values(*USAGE_FIELDS).get(pk=target.conversation_pk))
        # The rows as just written, for the listeners and the events: nothing is read back.
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
    if target.user_message_pk:
        assistant.user_message = Message(
            pk=target.user_message_pk, public_id=target.request_id, role=Message.Role.USER,
            prompt_tokens=usage.prompt_tokens, figures_source=figures,
        )
    return {
        "usage": {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                  "total_tokens": usage.total_tokens, "cached_tokens": usage.cached_tokens,
                  "reasoning_tokens": usage.reasoning_tokens},
        "cost": {"estimated": money_str(cost), "actual": money_str(actual),
                 "currency": "USD"},
        "status": outcome.status, "assistant": assistant,
        "user_message": assistant.user_message if target.user_message_pk else None,
        "conversation": conversation, "budget": budget,
    }


def settled_events(request_id: str, user: User, settled: dict, outcome: Outcome) -> list[dict]:
    usage = settled["usage"]
    if outcome.status != S.SUCCESS:
        code = outcome.error_code or CODE_FOR_STATUS.get(outcome.status, "PROVIDER_ERROR")
        return [{"type": "error", "request_id": request_id, "code": code,
                 "message": outcome.error_message or "The exchange did not complete.",
                 "details": {"status": settled["status"], "message_id": settled["assistant"].public_id,
                             "usage": usage}}]
    user_message = settled["user_message"]
    return [
        {"type": "stream_end", "request_id": request_id, "usage": usage},
        {"type": "message_complete", "request_id": request_id,
         "user_message": {"id": request_id, "prompt_tokens": user_message.prompt_tokens if user_message else None},
         "message": message_payload(settled["assistant"], with_html=True),
         "usage": usage, "cost": settled["cost"],
         "conversation_usage": settled["conversation"].usage_dict(),
         "budget": budgets.budget_payload(user, budget=settled["budget"])},
    ]


def _settle_and_describe(user: User, prepared: Prepared, outcome: Outcome) -> list[dict]:
    settled = settle_exchange(prepared.target, outcome)
    if settled is None:
        return [{"type": "error", "request_id": prepared.request_id, "code": "PROVIDER_ERROR",
                 "message": "This exchange was already settled elsewhere."}]
    return settled_events(prepared.request_id, user, settled, outcome)


# --- streaming ---------------------------------------------------------------------------------


SETTLE_ATTEMPTS = 3  # waits for a pooled connection before leaving the settle to the periodic one


class Exchange:
    """A started exchange; `events()` streams it and settles it exactly once."""

    def __init__(self, user: User, prepared: Prepared) -> None:
        self.user = user
        self.prepared = prepared
        self.settled = False

    @property
    def request_id(self) -> str:
        return self.prepared.request_id

    async def events(self) -> AsyncIterator[dict]:
        p = self.prepared
        loop = asyncio.get_running_loop()
        interval = settings.CHATLIMA_STREAM_BATCH_MS / 1000
        live = partials.LiveAnswer(assistant_pk=p.assistant_pk, reservation_id=p.reservation_id)
        parts = live.parts
        thoughts: list[str] = []
        pending: list[str] = []
        running = 0
        usage: Usage | None = None
        status = S.SUCCESS
        error_code = error_message = ""
        retries = 0
        started = first_token = ended = None
        stream = None
        try:
            yield p.saved_event
            yield p.start_event
            provider = _provider_layer().get_provider(p.provider)
            started = time.perf_counter()
            last_flush = loop.time()
            partials.saver().add(live)
            stream = provider.stream(p.chat_request)
            # A provider that goes quiet must not hold the exchange (and its hold) forever; the first
            # item may include the provider's own retries.
            gap = settings.PROVIDER_TIMEOUT_SECONDS
            wait = gap * (settings.PROVIDER_MAX_RETRIES + 1)
            while True:
                try:
                    async with asyncio.timeout(wait):
                        item = await anext(stream)
                except StopAsyncIteration:
                    break
                wait = gap
                if isinstance(item, Usage):
                    usage = item
                    continue
                if isinstance(item, Reasoning):
                    if item.text:
                        first_token = first_token or time.perf_counter()
                        thoughts.append(item.text)
                        live.estimated_tokens += count_tokens(item.text, p.model)
                    continue
                if not item:
                    continue
                if first_token is None:
                    first_token = time.perf_counter()
                parts.append(item)
                pending.append(item)
                now = loop.time()
                # The first delta goes out at once (time to first token); later ones are batched.
                if len(parts) == 1 or now - last_flush >= interval:
                    batch = "".join(pending)
                    pending.clear()
                    tokens = count_tokens(batch, p.model)
                    running += tokens
                    live.estimated_tokens += tokens
                    last_flush = now
                    yield {"type": "stream_chunk", "request_id": p.request_id, "chunk": batch,
                           "estimated_completion_tokens": running}
            ended = time.perf_counter()
            if pending:
                batch = "".join(pending)
                pending.clear()
                running += count_tokens(batch, p.model)
                yield {"type": "stream_chunk", "request_id": p.request_id, "chunk": batch,
                       "estimated_completion_tokens": running}
        except TimeoutError:
            status = S.TIMEOUT
            error_code, error_message = "TIMEOUT", "The provider did not answer in time."
        except ProviderError as exc:
            status = STATUS_FOR_CODE.get(exc.code, S.ERROR)
            error_code = exc.code if exc.code in STATUS_FOR_CODE else "PROVIDER_ERROR"
            error_message = exc.message
            retries = exc.retries
            usage = exc.usage
        except (asyncio.CancelledError, GeneratorExit):
            status = S.CANCELLED
            error_code, error_message = "CANCELLED", "The exchange was cancelled."
            raise
        except Exception as exc:
            logger.exception("exchange %s failed", p.request_id)
            status = S.ERROR
            error_code, error_message = "PROVIDER_ERROR", f"The provider failed: {type(exc).__name__}."
        finally:
            partials.saver().remove(live)
            ended = ended or time.perf_counter()
            result = await _shielded(self._finish(
                stream, parts, thoughts, usage, status, error_code, error_message, retries, started, first_token,
                ended,
            ))
        for event in result or []:
            yield event

    async def abandon(self) -> None:
        """Settle as cancelled an exchange whose stream never started (no provider call)."""
        if not self.settled:
            await _shielded(self._finish(None, [], [], None, S.CANCELLED, "CANCELLED", "The exchange was cancelled.",
                                         0, None, None, None))

    async def _finish(self, stream, parts, thoughts, usage, status, error_code, error_message, retries,
                      started, first_token, ended) -> list[dict]:
        if stream is not None:
            try:
                # Closing the provider's generator closes its HTTP stream.
                await stream.aclose()
            except Exception:  # noqa: BLE001 - a failing close must not stop the settle
                logger.warning("closing the provider stream of %s failed", self.request_id, exc_info=True)
        text = "".join(parts)
        if usage is None:
            usage = charged_usage(self.prepared.chat_request, text, "".join(thoughts))
        retries = max(retries, getattr(usage, "retries", 0) or 0)
        outcome = Outcome(
            status=status, text=text, usage=usage,
            response_time_ms=None if started is None else int((ended - started) * 1000),
            time_to_first_token_ms=None if started is None or first_token is None else int((first_token - started) * 1000),
            error_code=error_code, error_message=error_message, retries=retries,
        )
        for attempt in range(SETTLE_ATTEMPTS):
            try:
                events = await run_db(_settle_and_describe, self.user, self.prepared, outcome)
            except ServiceUnavailable as err:
                # Each attempt waited the pool's timeout and changed nothing. After the last, the
                # exchange stays pending with its last saved partial; its heartbeat has stopped, so
                # the periodic settle (chat.tasks.settle_stale_exchanges) settles it as interrupted.
                logger.warning("settling %s: no database connection (attempt %d)", self.request_id, attempt + 1)
                if attempt + 1 == SETTLE_ATTEMPTS:
                    return [{"type": "error", "request_id": self.request_id, "code": err.code,
                             "message": "The answer could not be saved yet: the server is busy. It will be "
                                        "settled from what was saved.", "details": err.details}]
                continue
            self.settled = True
            return events
        return []


def charged_usage(request: ChatRequest, text: str, reasoning_text: str = "") -> Usage:
    """What an exchange the provider reported no usage for is charged: the estimate of the prompt
    and of the output that really arrived; nothing at all when no output arrived (API.md: nothing is
    charged that the provider did not bill)."""
    base = _provider_layer_base()
    if not text and not reasoning_text:
        return base.unbilled_usage()
    return base.estimate_usage(request, text, reasoning_text=reasoning_text)


async def _finish_despite_cancel(task: asyncio.Future) -> Any:
    """Wait for `task` to the end however many times the caller is cancelled meanwhile, then pass
    one cancellation on: settling must not be lost to a second cancel or a disconnect."""
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return task.result()


async def _shielded(coro) -> Any:
    """Await `coro` to the end even if the caller is cancelled meanwhile (settling must not be lost)."""
    return await _finish_despite_cancel(asyncio.ensure_future(coro))


async def start_exchange(user: User, body: Any) -> Exchange | Replay:
    """Parse, check and prepare; raises ClientError for anything refused before the stream.

    Cancel-safe: if the caller is cancelled while the preparing transaction runs, the prepared
    exchange is settled as `cancelled` at once rather than left pending.
    """
    req = body if isinstance(body, SendRequest) else parse_send_body(body)
    task = asyncio.ensure_future(run_db(prepare_exchange, user, req))
    try:
        prepared = await _finish_despite_cancel(task)
    except asyncio.CancelledError:
        # However many cancels came while preparing: settle what was prepared, exactly once.
        if not task.cancelled() and task.exception() is None and isinstance(task.result(), Prepared):
            await Exchange(user, task.result()).abandon()
        raise
    if isinstance(prepared, Replay):
        return prepared
    return Exchange(user, prepared)


# --- exchanges a restart left behind -----------------------------------------------------------


def _interrupted_usage(row: ApiUsageLog, answer: Message) -> Usage:
    """What an interrupted exchange is charged: the estimate of its prompt and of the output its
    server last saved (text, and the running estimate that includes reasoning); nothing if none was."""
    completion = max(count_tokens(answer.content, row.model_name) if answer.content else 0,
                     answer.completion_tokens or 0)
    if not completion:
        return _provider_layer_base().unbilled_usage("interrupted")
    prompt = int((row.metadata or {}).get("estimated_prompt_tokens") or 0)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                 source="estimate", finish_reason="interrupted")


def stale_before(now: datetime | None = None) -> datetime:
    """Heartbeats older than this have stopped: `CHATLIMA_HEARTBEAT_STALE_SECONDS` (several save
    intervals) before now."""
    return (now or timezone.now()) - timedelta(seconds=settings.CHATLIMA_HEARTBEAT_STALE_SECONDS)


def settle_interrupted_exchanges(now: datetime | None = None) -> int:
    """Settle as `interrupted` the pending exchanges whose heartbeat has stopped, keeping their saved
    partial answers; returns how many.

    Only exchanges no live server streams: a streaming answer's `heartbeat_at` is stamped every save
    interval (chat.partials); one that never beat counts from its usage row's creation. Each settle
    is `settle_exchange`'s compare-and-set, so a sweep racing a live settle or another sweep counts
    the exchange once.
    """
    cutoff = stale_before(now)
    pending = (
        ApiUsageLog.objects.filter(status=S.PENDING, message__isnull=False)
        .filter(Q(message__heartbeat_at__lt=cutoff) | Q(message__heartbeat_at__isnull=True, created_at__lt=cutoff))
        .select_related("message")
    )
    count = 0
    for row in pending.iterator():
        outcome = Outcome(status=S.INTERRUPTED, text=row.message.content, usage=_interrupted_usage(row, row.message),
                          error_code="INTERRUPTED", error_message="The server stopped during this exchange.")
        if settle_exchange(SettleTarget.of(row), outcome) is not None:
            count += 1
    return count


def has_fresh_pending(now: datetime | None = None) -> bool:
    """Whether some pending exchange still has a recent heartbeat (a live server, or one just gone)."""
    cutoff = stale_before(now)
    return ApiUsageLog.objects.filter(status=S.PENDING).filter(
        Q(message__heartbeat_at__gte=cutoff) | Q(message__heartbeat_at__isnull=True, created_at__gte=cutoff)
    ).exists()
