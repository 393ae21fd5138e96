"""POST /draft-estimate/: the chat page's figure for a draft is the prompt estimate the send will make.

Each figure is checked against `prepare_exchange`'s own (the `stream_start.estimated_prompt_tokens`
of a real send, prepared right after), for the BPE tokenizer's models and the heuristic's, with
history, a system prompt and a context budget that cuts the history differently per model.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client

from chat.estimate import Draft, estimate_draft
from chat.exchange import build_context, parse_send_body, prepare_exchange
from chat.models import Conversation
from tests.pages.conftest import make_exchange
from tests.pages.helpers import page_data
from usage.tokens import count_tokens, estimate_tokens

pytestmark = pytest.mark.django_db

URL = "/draft-estimate/"
DRAFT = "Refactor getElementById() calls:\n    const el = document.getElementById('x'); // 42 times?"


@pytest.fixture(autouse=True)
def _openai_configured(settings):
    # The send refuses a model whose provider has no key; no provider is called here.
    settings.PROVIDERS = {**settings.PROVIDERS, "openai": {"api_key": "sk-test", "base_url": None}}


def post(client: Client, body, **extra):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(URL, data=data, content_type="application/json", **extra)


def sent_estimate(user, body: dict) -> int:
    """What the send of `body` puts in stream_start.estimated_prompt_tokens."""
    prepared = prepare_exchange(user, parse_send_body(body))
    return prepared.start_event["estimated_prompt_tokens"]


@pytest.mark.parametrize("model", ["gpt-4o-mini", "offline-demo"])
def test_a_new_chats_draft_is_counted_as_the_send_counts_it(owner, owner_client, model):
    response = post(owner_client, {"message": DRAFT, "model": model})
    assert response.status_code == 200
    answer = response.json()
    assert answer["model"] == model and answer["conversation_id"] is None
    assert answer["estimated_prompt_tokens"] == sent_estimate(owner, {"message": DRAFT, "model": model})
    assert answer["estimated_prompt_tokens"] - answer["base_prompt_tokens"] == count_tokens(DRAFT, model)


def test_the_bpe_figure_is_not_the_heuristics(owner_client):
    answer = post(owner_client, {"message": DRAFT, "model": "gpt-4o"}).json()
    drafted = answer["estimated_prompt_tokens"] - answer["base_prompt_tokens"]
    assert drafted == count_tokens(DRAFT, "gpt-4o") != estimate_tokens(DRAFT)


@pytest.mark.parametrize("model", ["gpt-4o-mini", "offline-demo", None])
def test_a_conversations_history_and_system_prompt_are_counted_and_cut_per_model(owner, owner_client, settings, model):
    conversation, _, _ = make_exchange(owner, user_text="def f(x):\n    return x ** 2  # " * 20, answer="ok " * 150)
    make_exchange(owner, conversation=conversation, user_text="naïve café " * 30, answer="Köln → Zürich " * 40)
    Conversation.objects.filter(pk=conversation.pk).update(system_prompt="Answer in haiku.")
    # A budget the newest turns fill: each tokenizer keeps a different part of the history.
    settings.CHATLIMA_CONTEXT_TOKEN_BUDGET = 400
    assert len(build_context(conversation, None, "gpt-4o-mini")) != len(build_context(conversation, None, "offline-demo"))
    body = {"message": DRAFT, "conversation_id": conversation.public_id}
    if model:
        body["model"] = model
    answer = post(owner_client, body).json()
    assert answer["model"] == (model or "offline-demo")  # none asked for: the conversation's
    assert answer["estimated_prompt_tokens"] == sent_estimate(owner, body)


def test_an_empty_draft_is_the_history_alone(owner, owner_client):
    conversation, _, _ = make_exchange(owner)
    answer = post(owner_client, {"message": "", "conversation_id": conversation.public_id}).json()
    assert answer["estimated_prompt_tokens"] == answer["base_prompt_tokens"]
    assert answer == estimate_draft(owner, Draft(message="", conversation_id=conversation.public_id))


def test_the_page_gives_the_script_the_url_and_a_working_csrf_token(owner):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    data = page_data(client.get("/").content.decode())
    assert data["estimate_url"] == URL
    refused = post(client, {"message": "hi"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "PERMISSION_DENIED"
    accepted = post(client, {"message": "hi"}, HTTP_X_CSRFTOKEN=data["csrf_token"])
    assert accepted.status_code == 200 and accepted.json()["estimated_prompt_tokens"] > 0


def test_a_strangers_conversation_is_not_found(owner, stranger_client):
    conversation, _, _ = make_exchange(owner)
    response = post(stranger_client, {"message": "hi", "conversation_id": conversation.public_id})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "CONVERSATION_NOT_FOUND"


def test_signed_out_and_wrong_method_answer_json(client, owner_client):
    response = post(client, {"message": "hi"})
    assert response.status_code == 401 and response.json()["error"]["code"] == "UNAUTHENTICATED"
    response = owner_client.get(URL)
    assert response.status_code == 405 and response["Allow"] == "POST"
    assert response.json()["error"]["code"] == "INVALID_MESSAGE"


@pytest.mark.parametrize(("body", "code", "field"), [
    (b"{not json", "INVALID_MESSAGE", "body"),
    (b"\xff\xfe", "INVALID_MESSAGE", "body"),
    ([1, 2], "INVALID_MESSAGE", "body"),
    ({"message": 5}, "INVALID_MESSAGE", "message"),
    ({"message": "x" * 32_001}, "INVALID_MESSAGE", "message"),
    ({"message": "a\x00b"}, "INVALID_MESSAGE", "message"),
    ('{"message": "lone \\ud800 surrogate"}', "INVALID_MESSAGE", "message"),
    ({"message": "hi", "model": "   "}, "INVALID_MESSAGE", "model"),
    ({"message": "hi", "model": "m" * 129}, "INVALID_MESSAGE", "model"),
    ({"message": "hi", "model": ["gpt-4o"]}, "INVALID_MESSAGE", "model"),
    ({"message": "hi", "model": "no-such-model"}, "MODEL_UNAVAILABLE", None),
    ({"message": "hi", "conversation_id": "conv_1\n"}, "INVALID_MESSAGE", "conversation_id"),
    ({"message": "hi", "conversation_id": 7}, "INVALID_MESSAGE", "conversation_id"),
    ({"message": "hi", "conversation_id": "conv_missing"}, "CONVERSATION_NOT_FOUND", None),
    ("[" * 100 + "]" * 100, "INVALID_MESSAGE", "body"),
])
def test_bad_input_is_refused_with_the_contracts_body(owner_client, body, code, field):
    response = post(owner_client, body)
    assert 400 <= response.status_code < 500
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    if field:
        assert error["details"]["field"] == field
