"""One rule decides whether a model can be used, whichever door asks (chat.providers.usable_provider):
it must be in the catalogue and its provider configured. Sends, the page's draft estimate and a
conversation's model set over REST refuse the same models with the same MODEL_UNAVAILABLE."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from chat.models import Conversation

pytestmark = pytest.mark.django_db(transaction=True)  # /chat/send runs its database work on another thread

NO_KEY = "moonshotai/kimi-k2"  # in the catalogue; OpenRouter has no key in tests


@pytest.fixture
def owner_client(owner) -> Client:
    client = Client()
    client.force_login(owner)
    return client


@pytest.fixture(autouse=True)
def _openrouter_without_key(settings):
    settings.PROVIDERS = {**settings.PROVIDERS, "openrouter": {"api_key": "", "base_url": None}}


def _refusal(response) -> dict:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "MODEL_UNAVAILABLE"
    return error


@pytest.mark.parametrize("model", ["no-such-model", NO_KEY])
def test_every_door_refuses_the_same_models(owner_api, owner_client, model):
    send = _refusal(owner_api.post("/api/v1/chat/send", {"message": "hi", "model": model}, format="json"))
    draft = _refusal(owner_client.post("/draft-estimate/", data=json.dumps({"message": "hi", "model": model}),
                                       content_type="application/json"))
    create = _refusal(owner_api.post("/api/v1/conversations", {"model": model}, format="json"))
    assert send["details"]["model"] == draft["details"]["model"] == model
    assert create["message"] == send["message"]
    if model == NO_KEY:
        assert send["details"]["provider"] == draft["details"]["provider"] == "openrouter"
    assert not Conversation.objects.exists(), "nothing was created by any refusal"


def test_the_default_and_configured_models_pass_every_door(owner_api, owner_client):
    assert owner_api.post("/api/v1/conversations", {"model": "offline-demo"}, format="json").status_code == 201
    draft = owner_client.post("/draft-estimate/", data=json.dumps({"message": "hi", "model": "offline-demo"}),
                              content_type="application/json")
    assert draft.status_code == 200
