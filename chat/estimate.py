"""The next message's prompt estimate, counted exactly as the exchange pipeline will count it.

`prepare_exchange` (chat/exchange/prepare.py) builds a `ChatRequest` from the conversation's system prompt,
its history as `build_context` cuts it for the model, and the message, and puts
`estimate_prompt_tokens` of it in `stream_start.estimated_prompt_tokens` (and the budget hold).
`prompt_request` builds that same request for a draft, so the chat page's "before sending" figure
is the figure the send will report, for every model (the BPE tokenizer for OpenAI-family models,
the calibrated heuristic for the others).

With it come the context gauge's figures: the model's context window (the catalogue's; None when
its provider does not say), how many of the conversation's messages the history holds and how many
older ones `build_context` leaves out (CHATLIMA_CONTEXT_TOKEN_BUDGET), and the prompt's cost at the
model's input price (None: no source prices the model, "price unknown", never $0).

And the attachments' share (chat.attachments.context_for): `attachment_tokens` (their text, counted
for the model), `file_count` and `url_count`, the same figures the usage row's metadata will note.
The block's framing (the preamble and each attachment's tag) is in `estimated_prompt_tokens` but not
in `attachment_tokens`, as in the usage row.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings

from chat.attachments import AttachmentContext, context_for
from chat.exchange import build_context
from chat.exchange.body import SYSTEM_PROMPT_CHARS
from chat.ids import ID_RULE, is_valid_id
from chat.models import Conversation, Message
from chat.providers import usable_provider
from chat.providers.base import ChatRequest, Turn, Usage, estimate_prompt_tokens
from chatlima.errors import ClientError
from chatlima.formats import money_str
from chatlima.text import is_blank, unstorable_character
from usage.catalogue import provider_of
from usage.models import CatalogueEntry, ModelPrice
from usage.pricing import price_for

MODEL_ID_CHARS = Conversation._meta.get_field("model").max_length


@dataclass(frozen=True)
class Draft:
    """What the page would send: the text typed so far (possibly empty), the model, the conversation."""

    message: str
    model: str | None = None
    conversation_id: str | None = None
    # A new chat's system prompt, still on the page (a conversation's own is read from it).
    system_prompt: str = ""


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
    """`{"message", "model"?, "conversation_id"?, "system_prompt"?}`, checked as the send body is, except
    that a draft may be empty. Pure validation, no database; every refusal is INVALID_MESSAGE naming the field."""
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
    system_prompt = body.get("system_prompt")
    system_prompt = "" if system_prompt is None else _text(system_prompt, "system_prompt", SYSTEM_PROMPT_CHARS)
    return Draft(message=message, model=model, conversation_id=conversation_id, system_prompt=system_prompt)


def prompt_request(conversation: Conversation | None, model: str, message: str,
                   history: tuple[Turn, ...] | None = None, system_prompt: str = "",
                   attached: AttachmentContext | None = None) -> ChatRequest:
    """The request `prepare_exchange` would build for `message`, as far as its prompt estimate reads
    it: the conversation's system prompt (for a new chat, the one the send will carry) with its
    attachments' block (chat.attachments.context_for), and its history as `build_context` cuts it
    for `model` (`history` and `attached` pass ones already read)."""
    own = conversation.system_prompt if conversation is not None else system_prompt
    if attached is None:
        attached = context_for(conversation, model)
    return ChatRequest(
        model=model, message=message,
        system_prompt=attached.system_prompt(own),
        history=build_context(conversation, None, model) if history is None else history,
    )


def context_window_of(model: str) -> int | None:
    """The model's context window in tokens, from the catalogue entry of the provider serving it (or
    an administrator's price for a model no provider lists); None where no one says (0 is unknown)."""
    provider = provider_of(model)
    window = (CatalogueEntry.objects.filter(provider=provider, model_id=model)
              .values_list("context_window", flat=True).first())
    if not window:
        window = (ModelPrice.objects.filter(model_id=model, is_active=True).order_by("-effective_date")
                  .values_list("context_window", flat=True).first())
    return window or None


def older_messages_left_out(conversation: Conversation | None, sent: int) -> int:
    """How many of the conversation's messages `build_context` could send (the same filter: finished
    user and assistant messages of the live thread, with text) but left out for the context budget, given that it sent
    `sent`. No query when the history holds every message there is."""
    if conversation is None or sent >= conversation.message_count:
        return 0
    sendable = (conversation.messages.filter(role__in=[Message.Role.USER, Message.Role.ASSISTANT],
                                             superseded_at__isnull=True)
                .exclude(status=Message.Status.STREAMING).exclude(content="").count())
    return max(sendable - sent, 0)


def prompt_cost(model: str, prompt_tokens: int) -> str | None:
    """The prompt at the model's price in force today (tiers included), as a money string; None when
    no source prices the model."""
    price = price_for(model)  # as usage.pricing.cost_of, without its warning on every draft of an unpriced model
    if price is None:
        return None
    return money_str(price.cost(Usage(prompt_tokens=prompt_tokens, completion_tokens=0, total_tokens=prompt_tokens,
                                      source="estimate")))


def estimate_draft(user, draft: Draft) -> dict[str, Any]:
    """The prompt tokens the send of `draft` would report in `stream_start.estimated_prompt_tokens`,
    with the context gauge's figures (module docstring).

    Read only: no transaction and no lock (one conversation lookup, the catalogue and price lookups,
    one count and the history pages `build_context` reads). A conversation that is not the user's is
    CONVERSATION_NOT_FOUND, a model the send would refuse MODEL_UNAVAILABLE
    (`chat.providers.usable_provider`, the one rule).
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
    attached = context_for(conversation, model)
    request = prompt_request(conversation, model, draft.message, system_prompt=draft.system_prompt, attached=attached)
    empty = replace(request, message="")
    estimated = estimate_prompt_tokens(request)
    sent = len(request.history)
    return {
        "conversation_id": draft.conversation_id,
        "model": model,
        "estimated_prompt_tokens": estimated,
        # The same without the draft: what the page adds its own count of the next draft to.
        "base_prompt_tokens": estimate_prompt_tokens(empty),
        "estimated_cost": prompt_cost(model, estimated),
        "context_window": context_window_of(model),
        "history_messages": sent,
        "older_messages_left_out": older_messages_left_out(conversation, sent),
        # What the conversation's attachments add to it (module docstring).
        "attachment_tokens": attached.tokens,
        "file_count": attached.file_count,
        "url_count": attached.url_count,
    }
