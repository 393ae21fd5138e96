"""The next message's prompt estimate, counted exactly as the exchange pipeline will count it.

`prepare_exchange` (chat/exchange/prepare.py) builds a `ChatRequest` from the conversation's system prompt,
its history as `build_context` cuts it for the model, and the message, and puts
`estimate_prompt_tokens` of it in `stream_start.estimated_prompt_tokens` (and the budget hold).
`prompt_request` builds that same request for a draft, so the chat page's "before sending" figure
is the figure the send will report, for every model (the BPE tokenizer for OpenAI-family models,
the calibrated heuristic for the others).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings

from chat.attachments import context_for
from chat.exchange import build_context
from chat.ids import ID_RULE, is_valid_id
from chat.models import Conversation
from chat.providers import usable_provider
from chat.providers.base import ChatRequest, Turn, estimate_prompt_tokens
from chatlima.errors import ClientError
from chatlima.text import is_blank, unstorable_character

MODEL_ID_CHARS = Conversation._meta.get_field("model").max_length


@dataclass(frozen=True)
class Draft:
    """What the page would send: the text typed so far (possibly empty), the model, the conversation."""

    message: str
    model: str | None = None
    conversation_id: str | None = None


def _invalid(message: str, field_name: str, **details: Any) -> ClientError:
    return ClientError("INVALID_MESSAGE", message, {"field": field_name, **details})


def _text(value: Any, field_name: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise _invalid(f"{field_name} must be text.", field_name)
    if len(value) > max_chars:
        raise _invalid(f"{field_name} is over {max_chars:,} characters.", field_name, max_chars=max_chars)
    bad = unstorable_character(value)
    if bad is not None:
        raise _invalid(f"{field_name} must not contain {bad}.", field_name)
    return value


def parse_draft(body: Any) -> Draft:
    """`{"message", "model"?, "conversation_id"?}`, checked as the send body is, except that a draft
    may be empty. Pure validation, no database; every refusal is INVALID_MESSAGE naming the field."""
    if not isinstance(body, dict):
        raise _invalid("The body must be a JSON object.", "body")
    message = _text(body.get("message", ""), "message", settings.CHATLIMA_MAX_MESSAGE_CHARS)
    model = body.get("model")
    if model is not None:
        model = _text(model, "model", MODEL_ID_CHARS)
        if is_blank(model):
            raise _invalid("model must be non-blank text.", "model")
    conversation_id = body.get("conversation_id")
    if conversation_id is not None and not is_valid_id(conversation_id):
        raise _invalid(f"conversation_id: {ID_RULE}", "conversation_id")
    return Draft(message=message, model=model, conversation_id=conversation_id)


def prompt_request(conversation: Conversation | None, model: str, message: str,
                   history: tuple[Turn, ...] | None = None) -> ChatRequest:
    """The request `prepare_exchange` would build for `message`, as far as its prompt estimate reads
    it: the conversation's system prompt (none for a new chat from the page) with its attachments'
    block (chat.attachments.context_for), and its history as
    `build_context` cuts it for `model` (`history` passes one already read)."""
    return ChatRequest(
        model=model, message=message,
        system_prompt=context_for(conversation, model).system_prompt(conversation.system_prompt if conversation else ""),
        history=build_context(conversation, None, model) if history is None else history,
    )


def estimate_draft(user, draft: Draft) -> dict[str, Any]:
    """The prompt tokens the send of `draft` would report in `stream_start.estimated_prompt_tokens`.

    Read only: no transaction and no lock (one conversation lookup, one price lookup and the history
    pages `build_context` reads). A conversation that is not the user's is CONVERSATION_NOT_FOUND,
    a model the send would refuse MODEL_UNAVAILABLE (`chat.providers.usable_provider`, the one rule).
    """
    conversation = None
    if draft.conversation_id is not None:
        conversation = Conversation.objects.for_user(user).filter(public_id=draft.conversation_id).first()
        if conversation is None:
            raise ClientError("CONVERSATION_NOT_FOUND", "No such conversation.",
                              {"conversation_id": draft.conversation_id})
    # The model the send would use: the one asked for, else the conversation's, else the default.
    model = (draft.model or (conversation.model if conversation else "") or settings.CHATLIMA_DEFAULT_MODEL).strip()
    usable_provider(model)
    request = prompt_request(conversation, model, draft.message)
    empty = replace(request, message="")
    return {
        "conversation_id": draft.conversation_id,
        "model": model,
        "estimated_prompt_tokens": estimate_prompt_tokens(request),
        # The same without the draft: what the page adds its own count of the next draft to.
        "base_prompt_tokens": estimate_prompt_tokens(empty),
    }
