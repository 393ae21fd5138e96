"""The chat pages: server-rendered history, with the data the page's script needs in json_script."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db.models import Sum
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.template import TemplateDoesNotExist
from django.template.loader import get_template
from django.utils.safestring import mark_safe

from chat.markdown import render_markdown
from chat.models import Conversation, Message
from chatlima.formats import money_display, money_str
from usage.queries import ListedModel, catalogue_models
from usage.tokens import count_tokens

SIDEBAR_CONVERSATIONS = 50
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


def _chat_page(request: HttpRequest, current: Conversation | None) -> HttpResponse:
    user = request.user
    conversations = list(Conversation.objects.for_user(user).order_by("-updated_at", "-pk")[:SIDEBAR_CONVERSATIONS])
    for item in conversations:
        item.cost_display = money_display(item.estimated_cost)
    messages = _transcript(current) if current is not None else []
    models = _model_choices()
    selected = _selected_model(current, models)
    context = {
        "conversations": conversations,
        "current": current,
        "messages": messages,
        "models": models,
        "selected_model": selected,
        "account": account_summary(user),
        "budget": budget_summary(user),
        "conversation_usage": _conversation_usage(current),
        "page_data": _page_data(current, models, selected),
        "has_alerts_partial": _template_exists(ALERTS_TEMPLATE),
        "max_message_chars": settings.CHATLIMA_MAX_MESSAGE_CHARS,
    }
    return render(request, "chat/chat.html", context)


def _transcript(current: Conversation) -> list[Message]:
    messages = list(
        current.messages.filter(role__in=[Message.Role.USER, Message.Role.ASSISTANT])
        .select_related("user_message").order_by("timestamp", "pk")
    )
    for message in messages:
        if message.role == Message.Role.ASSISTANT and message.status != Message.Status.STREAMING:
            # render_markdown sanitises (nh3): no script, handler or javascript: URL survives.
            message.html = mark_safe(render_markdown(message.content))  # noqa: S308
        message.is_estimate = message.figures_source == Message.FiguresSource.ESTIMATE
        message.not_charged = message.figures_source == Message.FiguresSource.NONE
        message.cost_display = money_display(message.cost)
    return messages


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
    try:
        from usage.budgets import budget_payload
    except ImportError:  # the budget rules live in usage/budgets.py; the row alone is enough to show
        budget_payload = None
    if budget_payload is not None:
        data = dict(budget_payload(user))
    else:
        from usage.models import Budget

        budget = Budget.objects.for_user(user)
        data = {
            "period": budget.period, "period_end": None, "token_limit": budget.token_limit,
            "total_tokens_used": budget.tokens_used, "remaining_tokens": budget.remaining_tokens,
            "cost_limit": money_str(budget.cost_limit),
            "cost_used": money_str(budget.cost_used),
        }
    limit = data.get("token_limit")
    used = data.get("total_tokens_used") or 0
    data["percent_used"] = min(100, round(100 * used / limit)) if limit else 0
    data["cost_limit_display"] = money_display(data.get("cost_limit"))
    data["cost_used_display"] = money_display(data.get("cost_used"))
    return data


def _conversation_usage(current: Conversation | None) -> dict[str, Any]:
    if current is None:
        usage = Conversation().usage_dict()
    else:
        usage = current.usage_dict()
    usage["cost"] = money_display(usage["cost"])
    return usage


def _history(current: Conversation | None, model: str) -> tuple:
    """What the next send resends, by the pipeline's own context builder (one query)."""
    if current is None:
        return ()
    from chat.exchange import build_context

    return build_context(current, None, model)


def _prompt_base_tokens(current: Conversation | None, model: str, history: tuple) -> tuple[int, int]:
    """The next send's prompt before the draft (system prompt + history), and what one more turn adds.

    Uses the pipeline's estimator, so the page's "before sending" figure is the figure the budget
    check will use.
    """
    from chat.providers.base import ChatRequest, Turn

    system_prompt = current.system_prompt if current is not None else ""
    estimate = _estimator()
    base = estimate(ChatRequest(model=model, message="", system_prompt=system_prompt, history=history))
    with_turn = estimate(ChatRequest(model=model, message="", system_prompt=system_prompt,
                                     history=(*history, Turn(role="user", content=""))))
    return base, max(with_turn - base, 0)


def _estimator():
    from chat.providers import base

    estimate = getattr(base, "estimate_prompt_tokens", None)
    if estimate is not None:
        return estimate

    def fallback(request) -> int:
        parts = [request.system_prompt, *(t.content for t in request.history), request.message]
        return sum(count_tokens(p, request.model) for p in parts)

    return fallback


def estimator_data() -> dict[str, Any]:
    """The draft-token heuristic's constants, so chat.js counts a draft as usage/tokens.py would."""
    from usage import tokens

    if hasattr(tokens, "estimate_tokens") and hasattr(tokens, "PER_CHAR"):
        return {
            "kind": "calibrated",
            "per_char": tokens.PER_CHAR,
            "word_free_chars": tokens.WORD_FREE_CHARS,
            "word_extra_per_char": tokens.WORD_EXTRA_PER_CHAR,
            "punct_first": tokens.PUNCT_FIRST,
            "punct_per_extra": tokens.PUNCT_PER_EXTRA,
            "newline": tokens.NEWLINE,
            "indent": tokens.INDENT,
            # Later refinements of the heuristic; their neutral values leave it as it was.
            "punct_word_merge": getattr(tokens, "PUNCT_WORD_MERGE", 0),
            "punct_newline_merge": getattr(tokens, "PUNCT_NEWLINE_MERGE", 0),
            "foreign_word": getattr(tokens, "FOREIGN_WORD", 1.0),
        }
    return {"kind": "chars", "chars_per_token": 4}


def _page_data(current: Conversation | None, models: list[ListedModel], selected: str) -> dict[str, Any]:
    """Everything chat.js reads, delivered through json_script (never |safe)."""
    model_data = []
    # The history is read once, cut to the context budget as the selected model counts it; each model
    # then counts that same history its own way (the cut rarely differs between them).
    history = _history(current, selected)
    for price in models:
        base, per_turn = _prompt_base_tokens(current, price.model_id, history)
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
        })
    return {
        "conversation_id": current.public_id if current is not None else None,
        "selected_model": selected,
        "models": model_data,
        "estimator": estimator_data(),
        "max_message_chars": settings.CHATLIMA_MAX_MESSAGE_CHARS,
        "conversation_url_template": "/c/__id__/",
    }
