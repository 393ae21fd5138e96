"""Every event an exchange sends (API.md "Streaming events"), built here and nowhere else.

The same dicts go out as WebSocket frames and as server-sent events; /send keeps the last ones.
Their keys come in the order the contract lists them. Plain functions of data in hand: no queries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from accounts.models import User
from chat.models import Message
from chat.payloads import message_payload
from chat.providers.base import Usage
from chatlima.formats import money_str
from usage import budgets
from usage.models import ApiUsageLog

if TYPE_CHECKING:
    from chat.exchange.settle import Outcome, Settled

S = ApiUsageLog.Status
# The error code of an exchange that ended as this usage status.
CODE_FOR_STATUS = {
    S.ERROR: "PROVIDER_ERROR", S.TIMEOUT: "TIMEOUT", S.RATE_LIMITED: "RATE_LIMITED",
    S.CANCELLED: "CANCELLED", S.INTERRUPTED: "PROVIDER_ERROR",
}


def code_for(status: str) -> str:
    return CODE_FOR_STATUS.get(status, "PROVIDER_ERROR")


def usage_figures(figures: Usage | ApiUsageLog) -> dict[str, int]:
    """An event's `usage`, from a provider's usage or a usage row (they name the figures alike)."""
    return {"prompt_tokens": figures.prompt_tokens, "completion_tokens": figures.completion_tokens,
            "total_tokens": figures.total_tokens, "cached_tokens": figures.cached_tokens,
            "reasoning_tokens": figures.reasoning_tokens}


def cost_figures(estimated, actual) -> dict[str, Any]:
    """An event's `cost`: decimal strings of 8 places, or null."""
    return {"estimated": money_str(estimated), "actual": money_str(actual), "currency": "USD"}


def message_saved(request_id: str, conversation_id: str, user_message: Message) -> dict:
    return {"type": "message_saved", "request_id": request_id, "conversation_id": conversation_id,
            "message": message_payload(user_message)}


def stream_start(request_id: str, conversation_id: str, model: str, estimated_prompt_tokens: int,
                 conversation_usage: dict, max_tokens: int | None, *, max_tokens_clamped: bool = False,
                 message_id: str | None = None, replayed: bool = False) -> dict:
    """`max_tokens` is the answer's real allowance (None only replaying an answer that had no
    exchange); `max_tokens_clamped` is there when the budget lowered it."""
    event = {"type": "stream_start", "request_id": request_id, "conversation_id": conversation_id, "model": model,
             "estimated_prompt_tokens": estimated_prompt_tokens, "conversation_usage": conversation_usage,
             "max_tokens": max_tokens}
    if max_tokens_clamped:
        event["max_tokens_clamped"] = True
    if message_id is not None:
        event["message_id"] = message_id
    if replayed:
        event["replayed"] = True
    return event


def stream_chunk(request_id: str, chunk: str, estimated_completion_tokens: int) -> dict:
    return {"type": "stream_chunk", "request_id": request_id, "chunk": chunk,
            "estimated_completion_tokens": estimated_completion_tokens}


def stream_end(request_id: str, usage: dict) -> dict:
    return {"type": "stream_end", "request_id": request_id, "usage": usage}


def message_complete(request_id: str, prompt_tokens: int | None, answer: Message | None, usage: dict, cost: dict,
                     conversation_usage: dict, budget: dict, *, replayed: bool = False,
                     user_message_id: str | None = None) -> dict:
    """`user_message` is the question answered: its id is the request id, except for a regeneration
    (chat/exchange/versions.py), whose question keeps its own id and `prompt_tokens` sums all its sends."""
    event = {"type": "message_complete", "request_id": request_id,
             "user_message": {"id": user_message_id or request_id, "prompt_tokens": prompt_tokens},
             "message": message_payload(answer, with_html=True) if answer is not None else None,
             "usage": usage, "cost": cost, "conversation_usage": conversation_usage, "budget": budget}
    if replayed:
        event["replayed"] = True
    return event


def error(request_id: str | None, code: str, message: str, details: dict | None = None) -> dict:
    event = {"type": "error", "request_id": request_id, "code": code, "message": message}
    if details is not None:
        event["details"] = details
    return event


def already_settled(request_id: str) -> dict:
    """A settle that found its exchange settled by someone else (a restart's sweep)."""
    return error(request_id, "PROVIDER_ERROR", "This exchange was already settled elsewhere.")


def not_saved_yet(request_id: str, code: str, details: dict) -> dict:
    """A settle that found no database connection however often it tried."""
    return error(request_id, code, "The answer could not be saved yet: the server is busy. It will be "
                                   "settled from what was saved.", details)


def settled(request_id: str, user: User, done: Settled, outcome: Outcome) -> list[dict]:
    """How a settled exchange ends its stream: `stream_end` and `message_complete`, or one `error`."""
    usage = usage_figures(done.usage)
    if outcome.status != S.SUCCESS:
        return [error(request_id, outcome.error_code or code_for(outcome.status),
                      outcome.error_message or "The exchange did not complete.",
                      {"status": outcome.status, "message_id": done.assistant.public_id, "usage": usage})]
    prompt_tokens = done.user_message.prompt_tokens if done.user_message is not None else None
    return [
        stream_end(request_id, usage),
        message_complete(request_id, prompt_tokens, done.assistant, usage, cost_figures(done.cost, done.actual),
                         done.conversation.usage_dict(), budgets.budget_payload(user, budget=done.budget),
                         user_message_id=done.user_message.public_id if done.user_message is not None else None),
    ]
