"""The context gauge's figures from POST /draft-estimate/ and the page: the model's context window
from the catalogue (None where no one says), the prompt's cost at the model's price (None, never
0, for a model no source prices), how many older messages the context budget leaves out, and a new
chat's system prompt (still on the page) counted as the send will count it."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from chat.exchange import build_context, parse_send_body, prepare_exchange
from chat.providers.base import ChatRequest, estimate_prompt_tokens
from chatlima.formats import money_str
from tests.pages.conftest import make_exchange
from tests.pages.helpers import page_data
from usage.models import CatalogueEntry

pytestmark = pytest.mark.django_db

URL = "/draft-estimate/"
UNPRICED = "acme-unpriced-7b"


@pytest.fixture(autouse=True)
def _openai_configured(settings):
    settings.PROVIDERS = {**settings.PROVIDERS, "openai": {"api_key": "sk-test", "base_url": None}}


def post(client, body: dict) -> dict:
    response = client.post(URL, data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content
    return response.json()


def test_a_priced_model_has_its_window_and_the_prompts_cost(owner_client):
    answer = post(owner_client, {"message": "How long is a piece of string?", "model": "gpt-4o-mini"})
    assert answer["context_window"] == 128_000
    # gpt-4o-mini: $0.15 per million input tokens (genai-prices).
    assert answer["estimated_cost"] == money_str(Decimal(answer["estimated_prompt_tokens"]) * Decimal("0.15") / 1_000_000)
    assert (answer["history_messages"], answer["older_messages_left_out"]) == (0, 0)


def test_an_unpriced_model_with_no_window_says_so_with_null_never_zero(owner_client):
    CatalogueEntry.objects.create(provider="openai", model_id=UNPRICED, display_name="Acme Unpriced 7B")
    answer = post(owner_client, {"message": "Hello", "model": UNPRICED})
    assert answer["estimated_cost"] is None and answer["context_window"] is None
    model = next(m for m in page_data(owner_client.get("/").content.decode())["models"] if m["id"] == UNPRICED)
    assert (model["input_per_mtok"], model["context_window"]) == (None, None)


def test_a_new_chats_system_prompt_is_counted_as_the_send_counts_it(owner, owner_client):
    body = {"message": "Plan a trip", "model": "gpt-4o-mini", "system_prompt": "You are a terse travel agent."}
    answer = post(owner_client, body)
    without = post(owner_client, {"message": "Plan a trip", "model": "gpt-4o-mini"})
    assert answer["estimated_prompt_tokens"] > without["estimated_prompt_tokens"]
    prepared = prepare_exchange(owner, parse_send_body(body))
    assert answer["estimated_prompt_tokens"] == prepared.start_event["estimated_prompt_tokens"]


def test_history_cut_by_the_context_budget_is_counted_and_said(owner, owner_client, settings):
    conversation, _, _ = make_exchange(owner, user_text="word " * 200, answer="reply " * 200)
    for _ in range(4):
        make_exchange(owner, conversation=conversation, user_text="word " * 200, answer="reply " * 200)
    settings.CHATLIMA_CONTEXT_TOKEN_BUDGET = 700
    sent = len(build_context(conversation, None, "offline-demo"))
    assert 0 < sent < 10
    answer = post(owner_client, {"message": "", "conversation_id": conversation.public_id})
    assert (answer["history_messages"], answer["older_messages_left_out"]) == (sent, 10 - sent)
    html = owner_client.get(f"/c/{conversation.public_id}/").content.decode()
    assert f"{10 - sent} older messages not sent: the history is cut to fit the context budget." in html
    assert page_data(html)["older_messages_left_out"] == 10 - sent


def test_the_page_draws_the_gauge_for_the_selected_model(owner_client):
    html = owner_client.get("/").content.decode()
    base = estimate_prompt_tokens(ChatRequest(model="offline-demo", message=""))
    assert f'<meter id="context-meter" min="0" max="32768" value="{base}" aria-labelledby="context-text">' in html
    assert f"Context: {base} of 32,768 tokens" in html
    assert 'id="context-cut" hidden' in html


def test_the_settings_form_shows_the_conversations_settings(owner, owner_client):
    conversation, _, _ = make_exchange(owner)
    conversation.system_prompt, conversation.temperature, conversation.max_tokens = "Be kind & brief.", 0.7, 1500
    conversation.save()
    html = owner_client.get(f"/c/{conversation.public_id}/").content.decode()
    assert "Be kind &amp; brief.</textarea>" in html
    assert 'placeholder="Provider\'s default" value="0.7"' in html
    assert 'placeholder="2048" value="1500"' in html
    for label in ("System prompt", "Temperature", "Max output tokens"):
        assert f">{label}</label>" in html
