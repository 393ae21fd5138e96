"""A `client_message_id` already answered: its stored result again, no provider call, nothing charged.

API.md "Idempotency": a retried send gets the events of the first one, marked `replayed`; one still
being answered is RATE_LIMITED (`in_progress`); one that failed replays its error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from accounts.models import User
from chat.exchange import events
from chat.models import Message
from chat.providers.base import Usage
from chatlima.errors import ClientError
from usage import budgets
from usage.models import ApiUsageLog

S = ApiUsageLog.Status


@dataclass
class Replay:
    """The stored result's events, streamed like a live exchange's."""

    events_list: list[dict]

    async def events(self) -> AsyncIterator[dict]:
        for event in self.events_list:
            yield event


def replay(user: User, user_message: Message, *, request_id: str | None = None,
           answer: Message | None = None) -> Replay:
    """The events a retry of `user_message` gets, read (no lock) from its usage row and answer.

    A regeneration (chat/exchange/versions.py) names its own `request_id` and `answer`; otherwise
    the request id is the user message's and the answer the one its usage row wrote (the newest
    answer when it has no row)."""
    conversation = user_message.conversation
    request_id = request_id or user_message.public_id
    row = ApiUsageLog.objects.filter(user=user, request_id=request_id).select_related("message").first()
    if answer is None:
        answer = row.message if row is not None and row.message_id else user_message.answers.order_by("-pk").first()
    if row is not None and row.status == S.PENDING:
        raise ClientError(
            "RATE_LIMITED", "This message is still being answered.",
            {"reason": "in_progress", "request_id": request_id},
        )
    saved = events.message_saved(request_id, conversation.public_id, user_message)
    if row is not None and row.status != S.SUCCESS:
        return Replay([saved, events.error(
            request_id, events.code_for(row.status), row.error_message or f"This message ended as {row.status}.",
            {"replayed": True, "status": row.status},
        )])
    if row is not None:
        usage, cost = events.usage_figures(row), events.cost_figures(row.cost_estimate, row.actual_cost)
    else:
        # Answered without a usage row (it arrived by sync): the messages' own figures.
        usage = events.usage_figures(Usage(
            prompt_tokens=user_message.prompt_tokens or 0,
            completion_tokens=(answer.completion_tokens or 0) if answer else 0,
            total_tokens=(answer.total_tokens or 0) if answer else 0,
            cached_tokens=(answer.cached_tokens or 0) if answer else 0,
            reasoning_tokens=(answer.reasoning_tokens or 0) if answer else 0,
        ))
        cost = events.cost_figures(answer.cost if answer else None, None)
    held = row.metadata if row is not None else {}
    stream = [saved, events.stream_start(
        request_id, conversation.public_id, (answer.model if answer else "") or conversation.model,
        user_message.prompt_tokens or 0, conversation.usage_dict(), held.get("max_tokens"),
        max_tokens_clamped=bool(held.get("max_tokens_clamped")), replayed=True,
    )]
    if answer is not None and answer.content:
        stream.append(events.stream_chunk(request_id, answer.content, usage["completion_tokens"]))
    return Replay([
        *stream,
        events.stream_end(request_id, usage),
        events.message_complete(
            request_id, user_message.prompt_tokens, answer, usage, cost, conversation.usage_dict(),
            budgets.budget_payload(user), replayed=True, user_message_id=user_message.public_id,
        ),
    ])
