"""Preparing: everything that can refuse a send before its stream starts, then its rows.

`prepare_exchange` finds the conversation, answers a known `client_message_id` with its replay,
checks the model, builds the provider's request (with as much history as the context budget
allows), takes the budget hold and stores the user message, a `streaming` answer and a `pending`
usage row in one transaction. A budget that cannot cover `max_tokens` lowers it to what it has left
(down to CHATLIMA_MIN_OUTPUT_TOKENS, `budgets.reserve`): the provider is asked for that, and
`stream_start` says so.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts.models import User
from chat import providers, sync_clock
from chat.attachments import AttachmentContext, context_for, live_conversation
from chat.exchange import events, versions
from chat.exchange.body import SendBody
from chat.exchange.replay import Replay, replay
from chat.exchange.settle import SettleTarget
from chat.exchange.supplied import Supplied, Via
from chat.ids import new_conversation_id, new_message_id
from chat.models import Conversation, Message, answer_settings, preview_of
from chat.providers import base
from chat.providers.base import ChatRequest, Turn, Usage
from chatlima.errors import ClientError
from chatlima.rows import insert_row
from usage import budgets
from usage.models import ApiUsageLog
from usage.pricing import cost_of
from usage.tokens import count_tokens

TITLE_CHARS = 60
CONTEXT_PAGE = 50  # history rows read at a time while filling the context's token budget


@dataclass(frozen=True)
class Prepared:
    """A started exchange: the rows it settles, what the provider is asked, and the two events it
    opens with. Plain data, so it crosses threads safely."""

    target: SettleTarget
    chat_request: ChatRequest
    saved_event: dict
    start_event: dict


# The live thread's history, newest first (the queryset it stands for is in build_context's
# docstring); literal, as the other hot-path statements are (chat/exchange/__init__.py): the ORM
# compiled it again for every page of every send.
HISTORY = (
    "SELECT id, role, content FROM chat_message WHERE conversation_id = %s AND role IN (%s, %s) "
    "AND superseded_at IS NULL AND status <> %s AND content <> ''{before} "
    "ORDER BY timestamp DESC, id DESC LIMIT %s OFFSET %s"
)
BEFORE = " AND (timestamp < %s OR (timestamp = %s AND id < %s))"


def _history(conversation_pk: int, before: tuple | None, size: int):
    """The live thread's (pk, role, content), newest first, fetched `size` at a time until the
    caller stops: plain LIMIT/OFFSET reads, since a PostgreSQL server-side cursor costs three round
    trips for what is usually one page."""
    sql = HISTORY.format(before=BEFORE if before is not None else "")
    params = [conversation_pk, Message.Role.USER, Message.Role.ASSISTANT, Message.Status.STREAMING]
    if before is not None:
        at = connection.ops.adapt_datetimefield_value(before[0])
        params += [at, at, before[1]]
    start = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, size, start])
            page = cursor.fetchall()
        yield from page
        if len(page) < size:
            return
        start += size


def build_context(conversation: Conversation | None, exclude_pk: int | None, model: str, *,
                  before: tuple | None = None) -> tuple[Turn, ...]:
    """Recent history of the live thread (no superseded message: chat/exchange/versions.py), newest
    first until the context token budget is spent, returned oldest first; with `before` (a message's
    (timestamp, pk)), only what came before that message. The rows are those of
    `conversation.messages.filter(role__in=[USER, ASSISTANT], superseded_at__isnull=True)
    .exclude(status=STREAMING).exclude(content="").order_by("-timestamp", "-pk")` (`HISTORY`)."""
    if conversation is None:
        return ()
    budget = settings.CHATLIMA_CONTEXT_TOKEN_BUDGET
    turns: list[Turn] = []
    spent = 0
    for pk, role, content in _history(conversation.pk, before, CONTEXT_PAGE):
        if pk == exclude_pk:
            continue
        cost = count_tokens(content, model)
        if spent + cost > budget:
            break
        spent += cost
        turns.append(Turn(role=role, content=content))
    turns.reverse()
    return tuple(turns)


def _existing_user_message(user: User, req: SendBody) -> Message | None:
    """The user message `client_message_id` names, or None; INVALID_MESSAGE if another message has it."""
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


# A literal statement: the ORM's update() with this F() expression costs 0.7 ms of CPU per call,
# this 0.25 ms (PostgreSQL; chat/exchange/__init__.py has the figures).
STAMP_CONVERSATION = (
    "UPDATE chat_conversation SET message_count = message_count + %s, updated_at = %s, version = %s, "
    "model = %s, last_message_preview = %s, last_message_at = %s, last_model = %s WHERE id = %s"
)


def _stamp_conversation(conversation: Conversation, added: int, model: str, text: str, version: int, now) -> None:
    """Count `added` messages on a conversation and stamp it as just written to; in the caller's
    transaction, holding the conversation's row lock to its commit."""
    at = connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        cursor.execute(STAMP_CONVERSATION, [added, at, version, model, preview_of(text), at, model, conversation.pk])


def _row_metadata(estimate: int, max_tokens: int, hold: budgets.Hold) -> dict:
    """The usage row's note of what was held: `max_tokens` is what the provider is asked for; a
    clamped hold also keeps what the request asked for."""
    metadata = {"estimated_prompt_tokens": estimate, "max_tokens": hold.output_tokens,
                "reservation_id": hold.reservation_id}
    if hold.clamped:
        metadata.update(max_tokens_clamped=True, max_tokens_requested=max_tokens)
    return metadata


def prepare_exchange(user: User, req: SendBody, supplied: Supplied | None = None,
                     via: Via | None = None) -> Prepared | Replay:
    """Everything before the provider call; raises ClientError before anything is written.

    One transaction; lock order for every writer: the budget row (`budgets.reserve`), then the
    sync clock (`sync_clock.tick`), then the conversation's row. With `supplied` (the OpenAI door),
    the provider is asked the client's own history and system prompt; `via` is the door and API
    token, recorded on the usage row, whose own budget is held too (chat/exchange/supplied.py).
    """
    conversation: Conversation | None = None
    read, has_files = None, True  # whether the conversation read has attachments (True: read them)
    if req.conversation_id:
        # Conversation.objects.for_user(user).filter(public_id=...), and whether it has attachments.
        conversation, has_files = live_conversation(user.pk, req.conversation_id)
        read = conversation
        if conversation is None:
            raise ClientError("CONVERSATION_NOT_FOUND", "No such conversation.", {"conversation_id": req.conversation_id})

    known = versions.known_regeneration(user, req)
    if known is not None:
        return known
    existing = None if req.regenerate else _existing_user_message(user, req)
    reuse: Message | None = None
    if existing is not None:
        has_row = ApiUsageLog.objects.filter(user=user, request_id=existing.public_id).exists()
        if has_row or existing.answers.exists():
            return replay(user, existing)
        # A user message that arrived by sync and was never answered: answer it now.
        reuse = existing
        conversation = existing.conversation
    version_of = _version_of(user, req, conversation, existing)
    if version_of is not None:
        conversation = version_of.conversation

    model = (req.model or (conversation.model if conversation else "") or settings.CHATLIMA_DEFAULT_MODEL).strip()
    provider = providers.usable_provider(model)
    # The send's own settings, else the conversation's (PATCH may change them), else the defaults.
    temperature, max_tokens = answer_settings(conversation, req.temperature, req.max_tokens)
    system_prompt = conversation.system_prompt if conversation else (req.system_prompt or "")
    # The conversation's files and URLs ride in the system prompt, as text for every provider.
    # (A retry or a version may have moved to another conversation: its files are read.)
    no_files = conversation is not None and conversation is read and not has_files
    attached = AttachmentContext() if no_files else context_for(conversation, model)
    chat_request = ChatRequest(
        model=model, message=reuse.content if reuse else req.message, system_prompt=attached.system_prompt(system_prompt),
        history=build_context(conversation, reuse.pk if reuse else None, model),
        temperature=temperature, max_tokens=max_tokens,
    )
    if version_of is not None:
        chat_request = _versioned_request(req, chat_request, conversation, version_of)
    if supplied is not None:
        chat_request = supplied.request(chat_request, attached.system_prompt(supplied.system_prompt))
    estimate = base.estimate_prompt_tokens(chat_request)

    def hold_cost(output: int) -> Decimal | None:
        """The prompt with `output` tokens of answer, at the model's price (None: no known price)."""
        return cost_of(model, Usage(prompt_tokens=estimate, completion_tokens=output,
                                    total_tokens=estimate + output, source="estimate"))

    now = timezone.now()
    request_id = reuse.public_id if reuse else (req.client_message_id or new_message_id())
    try:
        with transaction.atomic():
            hold = budgets.reserve(user, request_id, estimate, hold_cost, output_tokens=max_tokens,
                                   min_output_tokens=settings.CHATLIMA_MIN_OUTPUT_TOKENS,
                                   api_token=via.api_token if via else None)
            version = sync_clock.tick(user.pk)
            added = 1 if reuse or req.regenerate else 2
            if conversation is None:
                title = req.message.strip().splitlines()[0][:TITLE_CHARS]
                public_id = new_conversation_id()
                if supplied is not None:
                    title, public_id = supplied.title, supplied.new_conversation_id or public_id
                conversation = insert_row(
                    Conversation, owner=user, public_id=public_id, title=title, model=model,
                    system_prompt=req.system_prompt or "", temperature=req.temperature, max_tokens=req.max_tokens,
                    created_at=now, updated_at=now, version=version,
                    message_count=added, last_message_preview=preview_of(req.message), last_message_at=now,
                    last_model=model,
                )
                before = Conversation(owner=user).usage_dict()
            else:
                before = conversation.usage_dict()
                _stamp_conversation(conversation, added, model, chat_request.message, version, now)
            if version_of is not None:
                versions.supersede(version_of, now, version)
            if version_of is not None and version_of.question is not None:
                user_message = version_of.question  # asked again: no new user message
            elif reuse is None:
                user_message = insert_row(
                    Message, owner=user, conversation=conversation, public_id=request_id, role=Message.Role.USER,
                    content=req.message, model=model, timestamp=now, version=version,
                    replaces=version_of.old if version_of is not None else None,
                )
            else:
                user_message = reuse
                Message.objects.filter(pk=reuse.pk).update(version=version)
            assistant = insert_row(
                Message, owner=user, conversation=conversation, role=Message.Role.ASSISTANT, content="", model=model,
                timestamp=now + timedelta(microseconds=1), status=Message.Status.STREAMING,
                user_message=user_message, version=version,
                replaces=version_of.old if version_of is not None and version_of.adds_prompt else None,
            )
            metadata = {**_row_metadata(estimate, max_tokens, hold), **attached.metadata()}
            if version_of is not None:
                metadata.update(version_of.metadata())
            if via is not None:
                metadata.update(via.metadata())
            row = insert_row(
                ApiUsageLog, request_id=request_id, user=user, conversation=conversation, message=assistant,
                provider=provider, model_name=model, status=ApiUsageLog.Status.PENDING, created_at=now,
                metadata=metadata, api_token=via.api_token if via else None,
            )
    except IntegrityError:
        # Another request stored this client_message_id first: answer as a retry of it.
        known = versions.known_regeneration(user, req)
        if known is not None:
            return known
        existing = None if req.regenerate else _existing_user_message(user, req)
        if existing is None and versions.request_id_taken(user, request_id):
            # A regeneration's request id (no user message has it): not this send's to take.
            raise ClientError("INVALID_MESSAGE", "client_message_id is already used by another exchange.",
                              {"field": "client_message_id"}) from None
        if existing is None:
            raise
        return replay(user, existing)

    return Prepared(
        target=SettleTarget(
            usage_log_id=row.pk, user_id=user.pk, model=model, request_id=request_id, provider=provider,
            reservation_id=hold.reservation_id, held_tokens=hold.tokens, held_cost=hold.cost,
            assistant_pk=assistant.pk, assistant_public_id=assistant.public_id,
            assistant_timestamp=assistant.timestamp, user_message_pk=user_message.pk,
            conversation_pk=conversation.pk, metadata=dict(row.metadata),
            adds_prompt=bool(version_of and version_of.adds_prompt), user_message_public_id=user_message.public_id,
            replaces_public_id=version_of.old.public_id if version_of and version_of.adds_prompt else None,
        ),
        chat_request=replace(chat_request, max_tokens=hold.output_tokens),
        saved_event=_versioned(events.message_saved(request_id, conversation.public_id, user_message), version_of),
        start_event=events.stream_start(request_id, conversation.public_id, model, estimate, before,
                                        hold.output_tokens, max_tokens_clamped=hold.clamped,
                                        message_id=assistant.public_id),
    )


def _version_of(user: User, req: SendBody, conversation: Conversation | None,
                existing: Message | None) -> versions.VersionOf | None:
    """What a regeneration or an edit replaces (versions.resolve); a retry was answered before this."""
    if existing is not None and (req.regenerate or req.edit_of):
        raise ClientError("INVALID_MESSAGE", "client_message_id is already used by another message.",
                          {"field": "client_message_id"})
    return versions.resolve(user, req, conversation)


def _versioned_request(req: SendBody, chat_request: ChatRequest, conversation: Conversation,
                       version_of: versions.VersionOf) -> ChatRequest:
    """A regeneration asks its answer's question again, an edit asks the new text; either with the
    live history before the message it replaces (chat/exchange/versions.py)."""
    question = version_of.question.content if version_of.question is not None else req.message
    return replace(chat_request, message=question,
                   history=build_context(conversation, None, chat_request.model, before=version_of.cut))


def _versioned(event: dict, version_of: versions.VersionOf | None) -> dict:
    """`message_saved` of a regeneration or an edit says which message it replaces."""
    if version_of is not None:
        event[version_of.kind if version_of.kind == "edit_of" else "regenerates"] = version_of.old.public_id
    return event
