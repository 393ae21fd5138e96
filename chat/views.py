"""The chat pages: server-rendered history, with the data the page's script needs in json_script."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db.models import Sum
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware, get_token
from django.shortcuts import render
from django.template import TemplateDoesNotExist
from django.template.loader import get_template
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.safestring import mark_safe
from django.views.decorators.csrf import csrf_exempt

from chat.attachments import attachments_of, context_of
from chat.attachments.extract import CODE_SUFFIXES, FORMAT_FOR_SUFFIX
from chat.attachments.models import Attachment
from chat.attachments.payload import attachment_payload
from chat.estimate import estimate_draft, older_messages_left_out, parse_draft, prompt_cost, prompt_request
from chat.exchange import build_context
from chat.exchange.body import SYSTEM_PROMPT_CHARS
from chat.markdown import plain_text, render_markdown
from chat.models import MAX_TOKENS_LIMIT, Conversation, Message
from chat.providers.base import Turn, estimate_prompt_tokens
from chat.search import search_conversations
from chatlima.errors import ClientError, error_body, error_response
from chatlima.formats import money_display
from usage import tokens
from usage.budgets import budget_payload
from usage.queries import ListedModel, catalogue_models

SIDEBAR_CONVERSATIONS = 50
FRAGMENT_HEADER = "X-ChatLima-Fragment"
ALERTS_TEMPLATE = "usage/_alerts.html"


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return _chat_page(request, None)


@login_required
def conversation(request: HttpRequest, public_id: str) -> HttpResponse:
    found = Conversation.objects.for_user(request.user).filter(public_id=public_id).first()
    if found is None:
        # Someone else's conversation and a missing one look the same.
        raise Http404("No such conversation.")
    return _chat_page(request, found)


@csrf_exempt  # checked in the view, so that a refusal is the contract's JSON, not Django's HTML page
def draft_estimate(request: HttpRequest) -> HttpResponse:
    """POST /draft-estimate/ `{"message", "model"?, "conversation_id"?}` (the chat page's, session and
    CSRF): the prompt tokens sending that draft would report as `stream_start.estimated_prompt_tokens`."""
    if request.method != "POST":
        response = JsonResponse(error_body("INVALID_MESSAGE", "Only POST is allowed here.", {"method": request.method}),
                                status=405)
        response["Allow"] = "POST"
        return response
    try:
        if not request.user.is_authenticated:
            raise ClientError("UNAUTHENTICATED", "Sign in to estimate a message.")
        if _csrf_refusal(request) is not None:
            raise ClientError("PERMISSION_DENIED", "CSRF check failed for this session request.", {"reason": "csrf"})
        try:
            body = json.loads(request.body or b"null")
        except ValueError as exc:
            raise ClientError("INVALID_MESSAGE", "The body must be JSON.", {"field": "body"}) from exc
        return JsonResponse(estimate_draft(request.user, parse_draft(body)))
    except ClientError as err:
        return error_response(err)


def _csrf_refusal(request: HttpRequest) -> HttpResponse | None:
    check = CsrfViewMiddleware(lambda _request: None)
    check.process_request(request)
    return check.process_view(request, None, (), {})


def _chat_page(request: HttpRequest, current: Conversation | None) -> HttpResponse:
    user = request.user
    query = request.GET.get("q", "")
    conversations = search_conversations(user, query, SIDEBAR_CONVERSATIONS)
    for item in conversations:
        item.title_display = plain_text(item.title)
        item.preview_display = plain_text(item.last_message_preview)
    if request.headers.get(FRAGMENT_HEADER) == "conversations":
        # Search as you type (static/js/chat/sidebar.js): only the list, as the full page would show it.
        response = render(request, "chat/_conversation_list.html",
                          {"conversations": conversations, "query": query.strip(), "current": current})
        patch_vary_headers(response, [FRAGMENT_HEADER])
        return response
    models = _model_choices()
    transcript = _transcript(current, models) if current is not None else []
    selected = _selected_model(current, models)
    attached = attachments_of(current)  # read once: the list, and every model's prompt figure
    attachments = _attachments(attached, selected)
    context = {
        "conversations": conversations,
        "query": query.strip(),
        "current": current,
        "current_title": plain_text(current.title) if current is not None else "",
        "transcript": transcript,
        "models": models,
        "selected_model": selected,
        "account": account_summary(user),
        "budget": budget_summary(user),
        "conversation_usage": _conversation_usage(current),
        "page_data": _page_data(request, current, models, selected, attached, attachments),
        "attachments": attachments,
        "attachment_accept": ATTACHMENT_ACCEPT,
        "has_alerts_partial": _template_exists(ALERTS_TEMPLATE),
        "max_message_chars": settings.CHATLIMA_MAX_MESSAGE_CHARS,
    }
    response = render(request, "chat/chat.html", context)
    patch_vary_headers(response, [FRAGMENT_HEADER])
    return response


# The file input's hint of the kinds chat.attachments.extract reads (the server decides).
ATTACHMENT_ACCEPT = ",".join(sorted({*FORMAT_FOR_SUFFIX, *CODE_SUFFIXES}) + ["text/*", "application/json", "application/pdf"])


def _attachments(attached: list[Attachment], model: str) -> list[dict[str, Any]]:
    """The conversation's attachments as templates/chat/_attachment.html lists them (the REST
    payload), each with what its tokens add to the next message's cost at `model`'s input price
    (None: price unknown). static/js/chat/attachments.js keeps the list up to date."""
    rows = []
    for attachment in attached:
        cost = prompt_cost(model, attachment.tokens)
        rows.append({**attachment_payload(attachment), "cost": cost, "free": cost is not None and not Decimal(cost),
                     "fetched_display": fetched_display(attachment.fetched_at)})
    return rows


def fetched_display(when) -> str:
    """A URL's fetch time as the list shows it (static/js/chat/attachments.js spells it the same)."""
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if when else ""


def _transcript(current: Conversation, models: list[ListedModel]) -> list[Message]:
    """The live thread (chat/exchange/versions.py), oldest first, each message dressed for
    templates/chat/_message.html: an answer with its earlier versions (`earlier_versions`, oldest
    first) and the model that wrote each; a user message with how many answers it was sent for
    (`sends`) and, when edited, the versions it replaced (`earlier`) with what their answers cost."""
    names = {model.model_id: model.display_name for model in models}
    messages = list(
        current.messages.filter(role__in=[Message.Role.USER, Message.Role.ASSISTANT])
        .select_related("user_message").order_by("timestamp", "pk")
    )
    by_pk = {message.pk: message for message in messages}
    answers_of: dict[int, list[Message]] = defaultdict(list)
    for message in messages:
        _dress(message, names)
        if message.role == Message.Role.ASSISTANT and message.user_message_id:
            answers_of[message.user_message_id].append(message)
    live = [message for message in messages if message.superseded_at is None]
    for message in live:
        chain = _versions_of(message, by_pk)
        if message.role == Message.Role.ASSISTANT:
            message.earlier_versions = chain[:-1]
            message.version_count = len(chain)
        else:
            message.sends = len(answers_of[message.pk])
            message.earlier = [_earlier_version(old, messages, answers_of) for old in reversed(chain[:-1])]
    return live


def _dress(message: Message, names: dict[str, str]) -> None:
    if message.role == Message.Role.ASSISTANT and message.status != Message.Status.STREAMING:
        # render_markdown sanitises (nh3): no script, handler or javascript: URL survives.
        message.html = mark_safe(render_markdown(message.content))  # noqa: S308
    message.is_estimate = message.figures_source == Message.FiguresSource.ESTIMATE
    message.not_charged = message.figures_source == Message.FiguresSource.NONE
    message.cost_display = money_display(message.cost)
    message.model_name = names.get(message.model, message.model)


def _versions_of(message: Message, by_pk: dict[int, Message]) -> list[Message]:
    """`message` and the versions it replaced, oldest first."""
    chain = [message]
    while chain[-1].replaces_id in by_pk and len(chain) <= len(by_pk):
        chain.append(by_pk[chain[-1].replaces_id])
    chain.reverse()
    return chain


@dataclass
class EarlierVersion:
    """An edited message's earlier text, and what the answers that edit took out of the thread cost
    (every version of the answers to the user messages superseded with it): still in every total."""

    content: str
    answers: int
    tokens: int
    cost: Decimal | None


def _earlier_version(old: Message, messages: list[Message], answers_of: dict[int, list[Message]]) -> EarlierVersion:
    gone = [m for m in messages if m.role == Message.Role.USER and m.superseded_at == old.superseded_at]
    answers = [answer for question in gone for answer in answers_of[question.pk]]
    costs = [answer.cost for answer in answers if answer.cost is not None]
    return EarlierVersion(
        content=old.content, answers=len(answers),
        tokens=sum((a.total_tokens if a.total_tokens is not None else a.completion_tokens or 0) for a in answers),
        cost=sum(costs, Decimal("0")) if costs else None,
    )


def _template_exists(name: str) -> bool:
    try:
        get_template(name)
    except TemplateDoesNotExist:
        return False
    return True


def _model_choices() -> list[ListedModel]:
    """The catalogue's models still listed by their providers, grouped by provider (the selector's optgroups)."""
    return [model for model in catalogue_models() if model.listed]


def _selected_model(current: Conversation | None, models: list[ListedModel]) -> str:
    wanted = (current.model if current is not None else "") or settings.CHATLIMA_DEFAULT_MODEL
    available = [m.model_id for m in models if m.is_available]
    if wanted in available or not available:
        return wanted
    return settings.CHATLIMA_DEFAULT_MODEL if settings.CHATLIMA_DEFAULT_MODEL in available else available[0]


def account_summary(user) -> dict[str, Any]:
    """Account-wide figures from the conversations' running totals (deleted ones still cost what they cost)."""
    sums = Conversation.objects.filter(owner=user).aggregate(
        input_tokens=Coalesce(Sum("input_tokens"), 0),
        output_tokens=Coalesce(Sum("output_tokens"), 0),
        total_tokens=Coalesce(Sum("total_tokens"), 0),
        cost=Sum("estimated_cost"),
    )
    sums["cost"] = money_display(sums["cost"] or Decimal("0"))
    return sums


def budget_summary(user) -> dict[str, Any]:
    """The budget as the API reports it, plus what the bar needs."""
    data = dict(budget_payload(user))
    limit = data.get("token_limit")
    used = data.get("total_tokens_used") or 0
    data["percent_used"] = min(100, round(100 * used / limit)) if limit else 0
    return data


def _conversation_usage(current: Conversation | None) -> dict[str, Any]:
    if current is None:
        usage = Conversation().usage_dict()
    else:
        usage = current.usage_dict()
    usage["cost"] = money_display(usage["cost"])
    return usage


def _prompt_base_tokens(current: Conversation | None, model: str, history: tuple,
                        attached: list[Attachment]) -> tuple[int, int]:
    """The next send's prompt before the draft (system prompt, attachments + history), and what one more
    turn adds, by the pipeline's own estimate (chat/estimate.py), so the figure is the one the budget check uses."""
    request = prompt_request(current, model, "", history, attached=context_of(attached, model))
    with_turn = replace(request, history=(*history, Turn(role="user", content="")))
    base = estimate_prompt_tokens(request)
    return base, max(estimate_prompt_tokens(with_turn) - base, 0)


def estimator_data() -> dict[str, Any]:
    """The draft-token heuristic's constants, so the page counts a draft as usage/tokens.py would
    while the server's own figure is on its way."""
    return {
        "per_char": tokens.PER_CHAR,
        "word_free_chars": tokens.WORD_FREE_CHARS,
        "word_extra_per_char": tokens.WORD_EXTRA_PER_CHAR,
        "punct_first": tokens.PUNCT_FIRST,
        "punct_per_extra": tokens.PUNCT_PER_EXTRA,
        "newline": tokens.NEWLINE,
        "indent": tokens.INDENT,
        "punct_word_merge": tokens.PUNCT_WORD_MERGE,
        "punct_newline_merge": tokens.PUNCT_NEWLINE_MERGE,
        "foreign_word": tokens.FOREIGN_WORD,
    }


def _page_data(request: HttpRequest, current: Conversation | None, models: list[ListedModel],
               selected: str, attached: list[Attachment], attachments: list[dict[str, Any]]) -> dict[str, Any]:
    """Everything the page's script (static/js/chat/) reads, delivered through json_script (never |safe)."""
    model_data = []
    # The history is read once, cut to the context budget as the selected model counts it; each model
    # then counts that same history its own way (the cut rarely differs between them). The page asks
    # the server for every draft's exact figure (draft_estimate); these seed its figure meanwhile.
    history = build_context(current, None, selected)
    for price in models:
        base, per_turn = _prompt_base_tokens(current, price.model_id, history, attached)
        model_data.append({
            "id": price.model_id,
            "display_name": price.display_name,
            "available": price.is_available,
            # null: no source prices the model ("price unknown"), never another model's price.
            "input_per_mtok": None if price.input_per_mtok is None else str(price.input_per_mtok),
            "output_per_mtok": None if price.output_per_mtok is None else str(price.output_per_mtok),
            "currency": price.currency,
            "pricing_source": None if price.price is None else price.price.source,
            "base_prompt_tokens": base,
            "per_turn_tokens": per_turn,
            "context_window": price.context_window or None,  # None: "context window unknown"
        })
    chosen = next((m for m in model_data if m["id"] == selected), None)
    older_left_out = older_messages_left_out(current, len(history))
    return {
        "conversation_id": current.public_id if current is not None else None,
        "selected_model": selected,
        "models": model_data,
        "estimator": estimator_data(),
        "max_message_chars": settings.CHATLIMA_MAX_MESSAGE_CHARS,
        "conversation_url_template": "/c/__id__/",
        "estimate_url": reverse("chat:draft_estimate"),
        "usage_url": reverse("usage:dashboard"),
        "csrf_token": get_token(request),
        # The context gauge as first drawn (static/js/chat/estimate.js redraws it) and the settings' limits.
        "gauge": {"prompt_tokens": chosen["base_prompt_tokens"] if chosen else 0,
                  "context_window": chosen["context_window"] if chosen else None, "older_left_out": older_left_out,
                  "attachment_tokens": context_of(attached, selected).tokens},
        # static/js/chat/attachments.js: the list as first drawn, and where to send a new chat's files.
        "attachments": attachments,
        "attachments_url_template": "/api/v1/conversations/__id__/attachments",
        "conversations_url": "/api/v1/conversations",
        "older_messages_left_out": older_left_out,
        "settings_limits": {"system_prompt_chars": SYSTEM_PROMPT_CHARS, "max_tokens": MAX_TOKENS_LIMIT,
                            "default_max_tokens": settings.CHATLIMA_DEFAULT_MAX_TOKENS},
    }
