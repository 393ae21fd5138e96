"""A conversation's settings over REST (issue 15): `temperature` and `max_tokens` beside
`system_prompt` and `model`, set on create, changed or cleared (null) by PATCH, returned by GET;
a bad value is a 400 INVALID_MESSAGE with the contract's body and changes nothing."""

from __future__ import annotations

import pytest

from chat.models import Conversation

pytestmark = pytest.mark.django_db

CONV = "conv_1753195195759_settings1"


def create(api, **fields):
    response = api.post("/api/v1/conversations", {"id": CONV, **fields}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_create_with_settings_then_read_them_back(owner_api, owner):
    created = create(owner_api, system_prompt="Answer in French.", temperature=0.3, max_tokens=700)
    assert (created["system_prompt"], created["temperature"], created["max_tokens"]) == ("Answer in French.", 0.3, 700)
    detail = owner_api.get(f"/api/v1/conversations/{CONV}").json()
    assert (detail["temperature"], detail["max_tokens"]) == (0.3, 700)
    listed = owner_api.get("/api/v1/conversations").json()["results"][0]
    assert (listed["temperature"], listed["max_tokens"]) == (0.3, 700)
    stored = Conversation.objects.get(owner=owner, public_id=CONV)
    assert (stored.temperature, stored.max_tokens) == (0.3, 700)


def test_a_new_conversation_has_the_defaults_as_null(owner_api):
    created = create(owner_api)
    assert (created["temperature"], created["max_tokens"]) == (None, None)


def test_patch_changes_and_null_clears(owner_api, owner):
    create(owner_api)
    version = Conversation.objects.get(public_id=CONV).version
    changed = owner_api.patch(f"/api/v1/conversations/{CONV}", {"temperature": 2, "max_tokens": 1_000_000,
                                                                "system_prompt": "Be brief."}, format="json")
    assert changed.status_code == 200, changed.content
    assert (changed.json()["temperature"], changed.json()["max_tokens"], changed.json()["system_prompt"]) == (2, 1_000_000, "Be brief.")
    stored = Conversation.objects.get(public_id=CONV)
    assert stored.version > version  # a real change moves the sync clock
    cleared = owner_api.patch(f"/api/v1/conversations/{CONV}", {"temperature": None, "max_tokens": None}, format="json")
    assert (cleared.json()["temperature"], cleared.json()["max_tokens"]) == (None, None)
    stored.refresh_from_db()
    assert (stored.temperature, stored.max_tokens, stored.system_prompt) == (None, None, "Be brief.")


@pytest.mark.parametrize(("field", "value"), [
    ("temperature", -0.1), ("temperature", 2.01), ("temperature", "0.5"), ("temperature", True), ("temperature", [1]),
    ("max_tokens", 0), ("max_tokens", 1_000_001), ("max_tokens", 1.5), ("max_tokens", 100.0), ("max_tokens", "100"),
    ("max_tokens", False),
])
def test_bad_values_are_refused_and_change_nothing(owner_api, field, value):
    create(owner_api, temperature=0.7, max_tokens=300)
    before = Conversation.objects.values().get(public_id=CONV)
    response = owner_api.patch(f"/api/v1/conversations/{CONV}", {field: value, "title": "New"}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "INVALID_MESSAGE" and field in error["details"] and error["message"]
    assert Conversation.objects.values().get(public_id=CONV) == before
    refused = owner_api.post("/api/v1/conversations", {"id": "conv_other", field: value}, format="json")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "INVALID_MESSAGE"
    assert not Conversation.objects.filter(public_id="conv_other").exists()


def test_another_users_conversation_is_404_and_unchanged(owner_api, stranger_api):
    create(owner_api, temperature=0.5)
    response = stranger_api.patch(f"/api/v1/conversations/{CONV}", {"temperature": 1.5}, format="json")
    assert response.status_code == 404 and response.json()["error"]["code"] == "CONVERSATION_NOT_FOUND"
    assert Conversation.objects.get(public_id=CONV).temperature == 0.5
