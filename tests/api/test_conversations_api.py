"""Conversations CRUD: scoped to the caller, tombstones and clock ticks for sync."""

from __future__ import annotations

import pytest

from chat import sync_clock
from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db


def test_create_with_a_client_id_then_list_and_read(owner_api, owner):
    response = owner_api.post(
        "/api/v1/conversations", {"id": "conv_1753195195759_a209edwxv", "title": "Airports", "model": "offline-demo"}, format="json"
    )
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["id"] == "conv_1753195195759_a209edwxv"
    assert created["conversation_usage"] == {
        "input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "reasoning_tokens": 0, "cached_tokens": 0,
        "cost": "0.00000000", "message_count": 0,
    }
    listed = owner_api.get("/api/v1/conversations").json()
    assert [c["id"] for c in listed["results"]] == ["conv_1753195195759_a209edwxv"]
    assert listed["next"] is None
    detail = owner_api.get("/api/v1/conversations/conv_1753195195759_a209edwxv").json()
    assert (detail["title"], detail["messages"]) == ("Airports", [])


def test_a_retried_create_returns_the_same_conversation(owner_api, owner):
    first = owner_api.post("/api/v1/conversations", {"id": "conv_1"}, format="json")
    again = owner_api.post("/api/v1/conversations", {"id": "conv_1"}, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert Conversation.objects.filter(owner=owner).count() == 1


def test_a_server_made_id_has_the_contract_shape(owner_api):
    created = owner_api.post("/api/v1/conversations", {}, format="json").json()
    assert created["id"].startswith("conv_") and len(created["id"].split("_")[2]) == 9


@pytest.mark.parametrize("body", [{"id": "bad id!"}, {"id": "x" * 65}, {"title": "t" * 256}, {"title": ["x"]}])
def test_create_refuses_bad_fields(owner_api, body):
    response = owner_api.post("/api/v1/conversations", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_MESSAGE"


def test_an_unknown_model_is_refused(owner_api):
    response = owner_api.post("/api/v1/conversations", {"model": "no-such-model"}, format="json")
    assert (response.status_code, response.json()["error"]["code"]) == (400, "MODEL_UNAVAILABLE")


def test_detail_lists_messages_oldest_first_with_their_figures(owner_api, owner):
    conv = Conversation.objects.create(owner=owner, public_id="conv_a")
    question = Message.objects.create(owner=owner, conversation=conv, public_id="msg_q", role="user", content="hi", prompt_tokens=5)
    Message.objects.create(
        owner=owner, conversation=conv, public_id="msg_a", role="assistant", content="hello", completion_tokens=9,
        total_tokens=14, user_message=question,
    )
    conv.recompute_totals()
    detail = owner_api.get("/api/v1/conversations/conv_a").json()
    assert [(m["id"], m["prompt_tokens"], m["completion_tokens"], m["user_message_id"]) for m in detail["messages"]] == [
        ("msg_q", 5, None, None), ("msg_a", None, 9, "msg_q"),
    ]
    assert detail["conversation_usage"]["input_tokens"] == 5
    assert detail["conversation_usage"]["output_tokens"] == 9


def test_patch_changes_fields_and_ticks_the_clock(owner_api, owner):
    owner_api.post("/api/v1/conversations", {"id": "conv_1", "title": "old"}, format="json")
    before = sync_clock.current(owner.pk)
    response = owner_api.patch("/api/v1/conversations/conv_1", {"title": "new", "system_prompt": "Be brief."}, format="json")
    assert response.status_code == 200
    assert (response.json()["title"], response.json()["system_prompt"]) == ("new", "Be brief.")
    stored = Conversation.objects.get(owner=owner)
    assert sync_clock.current(owner.pk) == before + 1 == stored.version
    # The same values again are not a change.
    owner_api.patch("/api/v1/conversations/conv_1", {"title": "new"}, format="json")
    assert sync_clock.current(owner.pk) == before + 1


def test_delete_leaves_a_tombstone_and_hides_the_conversation(owner_api, owner):
    owner_api.post("/api/v1/conversations", {"id": "conv_1"}, format="json")
    before = sync_clock.current(owner.pk)
    assert owner_api.delete("/api/v1/conversations/conv_1").status_code == 204
    stored = Conversation.objects.get(owner=owner)
    assert stored.deleted_at is not None and stored.version == before + 1
    assert owner_api.get("/api/v1/conversations/conv_1").status_code == 404
    assert owner_api.get("/api/v1/conversations").json()["results"] == []
    assert owner_api.get("/api/v1/sync", {"since": _cursor(before)}).json()["deleted"] == ["conv_1"]


def _cursor(version: int) -> str:
    from chat.sync.cursor import encode_cursor

    return encode_cursor(version, None)


def test_a_stranger_gets_404_everywhere(owner_api, stranger_api, owner):
    owner_api.post("/api/v1/conversations", {"id": "conv_1", "title": "mine"}, format="json")
    for method, kwargs in [("get", {}), ("patch", {"data": {"title": "theirs"}, "format": "json"}), ("delete", {})]:
        response = getattr(stranger_api, method)("/api/v1/conversations/conv_1", **kwargs)
        assert response.status_code == 404, method
        assert response.json()["error"]["code"] == "CONVERSATION_NOT_FOUND"
    assert stranger_api.get("/api/v1/conversations").json()["results"] == []
    assert stranger_api.get("/api/v1/token-usage", {"conversation_id": "conv_1"}).status_code == 404
    stored = Conversation.objects.get(owner=owner)
    assert (stored.title, stored.deleted_at) == ("mine", None)
    # The stranger may own a conversation with the same id without touching the owner's.
    assert stranger_api.post("/api/v1/conversations", {"id": "conv_1", "title": "theirs"}, format="json").status_code == 201
    assert owner_api.get("/api/v1/conversations/conv_1").json()["title"] == "mine"


def test_the_list_pages_newest_first(owner_api, owner):
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    for k in range(5):
        Conversation.objects.create(owner=owner, public_id=f"conv_{k}", updated_at=now - timedelta(minutes=k))
    first = owner_api.get("/api/v1/conversations", {"limit": 2}).json()
    assert [c["id"] for c in first["results"]] == ["conv_0", "conv_1"]
    second = owner_api.get(first["next"]).json()
    third = owner_api.get(second["next"]).json()
    assert [c["id"] for c in second["results"] + third["results"]] == ["conv_2", "conv_3", "conv_4"]
    assert third["next"] is None


def test_the_api_needs_credentials(client):
    assert client.get("/api/v1/conversations").status_code == 401
    assert client.get("/api/v1/conversations/conv_1").status_code == 401


def test_messages_page_oldest_first_and_only_for_the_owner(owner_api, stranger_api, owner):
    from datetime import timedelta

    from django.utils import timezone

    conv = Conversation.objects.create(owner=owner, public_id="conv_long")
    start = timezone.now()
    for k in range(5):
        Message.objects.create(owner=owner, conversation=conv, public_id=f"msg_{k}", role="user", content=str(k),
                               timestamp=start + timedelta(seconds=k))
    first = owner_api.get("/api/v1/conversations/conv_long/messages", {"limit": 3}).json()
    rest = owner_api.get(first["next"]).json()
    assert [m["id"] for m in first["results"] + rest["results"]] == [f"msg_{k}" for k in range(5)]
    assert rest["next"] is None
    assert stranger_api.get("/api/v1/conversations/conv_long/messages").status_code == 404
