"""Push and pull in the mobile client's format (seed 000), and the rules of a push."""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest

from chat import sync_clock
from chat.models import Conversation, Message
from chat.sync.schema import push_limits
from tests.api.conftest import make_conversation, pull_all
from usage.models import ApiUsageLog, Budget

pytestmark = pytest.mark.django_db

DERIVED = {"userId", "messageCount", "totalTokens", "lastMessagePreview", "lastMessageTimestamp", "lastModel"}


def push(client, body, status=200):
    response = client.post("/api/v1/sync", body, format="json")
    assert response.status_code == status, response.content
    return response.json()


def test_seed_body_pushed_verbatim_comes_back_field_for_field(owner_api, seed):
    answer = push(owner_api, seed)
    assert answer["conversations"] == [
        {"id": "conv_1753195195759_a209edwxv", "status": "created", "messages": {"created": 2, "updated": 0, "unchanged": 0}}
    ]
    pulled, deleted, _ = pull_all(owner_api)
    assert deleted == []
    [conversation] = pulled
    sent = seed["conversations"][0]
    for name, value in sent.items():
        if name in ("messages", "userId"):
            continue
        assert conversation[name] == value, name
    for sent_message, got in zip(sent["messages"], conversation["messages"], strict=True):
        for name, value in sent_message.items():
            assert got[name] == value, (sent_message["id"], name)
    user_message, assistant = conversation["messages"]
    assert user_message["prompt_tokens"] == 32
    assert assistant["completion_tokens"] == 120
    assert assistant["user_message_id"] == "msg_1753195195759_ei5l6ns9o"
    assert conversation["totalInputTokens"] == 32
    assert conversation["totalOutputTokens"] == 120
    assert conversation["totalCost"] == "0.00000000"
    assert conversation["userId"] != sent["userId"]


def test_replaying_a_push_changes_nothing_and_keeps_the_clock(owner_api, owner, seed):
    first = push(owner_api, seed)
    version = sync_clock.current(owner.pk)
    stamps = list(Message.objects.values_list("public_id", "version", "created_at").order_by("pk"))
    again = push(owner_api, copy.deepcopy(seed))
    assert again["conversations"] == [
        {"id": "conv_1753195195759_a209edwxv", "status": "unchanged", "messages": {"created": 0, "updated": 0, "unchanged": 2}}
    ]
    assert sync_clock.current(owner.pk) == version
    assert again["cursor"] == first["cursor"]
    assert list(Message.objects.values_list("public_id", "version", "created_at").order_by("pk")) == stamps


def test_derived_fields_from_the_client_are_ignored(owner_api, owner, seed):
    conversation = seed["conversations"][0]
    conversation.update(messageCount=99, totalTokens=1_000_000, lastMessagePreview="lies", lastModel="gpt-4o", userId="someone")
    push(owner_api, seed)
    stored = Conversation.objects.get(owner=owner)
    assert (stored.message_count, stored.total_tokens, stored.last_model) == (2, 152, "moonshotai/kimi-k2:free")
    assert stored.last_message_preview.startswith("Japan has")


def test_pushed_figures_never_touch_the_budget_or_usage_log(owner_api, owner, seed):
    seed["conversations"][0]["messages"][1]["completion_tokens"] = 900_000
    push(owner_api, seed)
    budget = Budget.objects.get(user=owner)
    assert (budget.tokens_used, budget.tokens_held, budget.cost_used) == (0, 0, Decimal("0"))
    assert not ApiUsageLog.objects.exists()


def test_a_push_with_one_bad_item_stores_nothing(owner_api, owner, seed):
    good = make_conversation("conv_good", 4)
    bad = make_conversation("conv_bad", 4)
    bad["messages"][3]["completion_tokens"] = -5
    bad["messages"][1]["role"] = "robot"
    seed["conversations"] += [good, bad]
    answer = push(owner_api, seed, status=400)
    assert answer["error"]["code"] == "INVALID_MESSAGE"
    assert answer["error"]["details"] == {
        "conversations[2].messages[1].role": "One of user, assistant, system.",
        "conversations[2].messages[3].completion_tokens": "Token figures are between 0 and 2147483647.",
    }
    assert not Conversation.objects.exists()
    assert not Message.objects.exists()
    assert sync_clock.current(owner.pk) == 0


@pytest.mark.parametrize(
    "field, value",
    [("prompt_tokens", -1), ("prompt_tokens", 1.5), ("prompt_tokens", "32"), ("prompt_tokens", True), ("total_tokens", 2**40)],
)
def test_negative_or_non_integer_token_figures_are_refused(owner_api, seed, field, value):
    seed["conversations"][0]["messages"][0][field] = value
    answer = push(owner_api, seed, status=400)
    assert list(answer["error"]["details"]) == [f"conversations[0].messages[0].{field}"]
    assert not Message.objects.exists()


def test_forged_figures_cannot_overwrite_what_the_server_measured(owner_api, owner):
    conv = Conversation.objects.create(owner=owner, public_id="conv_srv", title="served")
    question = Message.objects.create(
        owner=owner, conversation=conv, public_id="msg_q", role="user", content="hi", prompt_tokens=7,
        figures_source=Message.FiguresSource.PROVIDER,
    )
    Message.objects.create(
        owner=owner, conversation=conv, public_id="msg_a", role="assistant", content="hello", completion_tokens=11,
        total_tokens=18, user_message=question, figures_source=Message.FiguresSource.PROVIDER, model="offline-demo",
    )
    conv.recompute_totals()
    body = {"conversations": [{
        "id": "conv_srv", "title": "served", "updatedAt": "2000-01-01T00:00:00Z",
        "messages": [
            {"id": "msg_q", "role": "user", "content": "hi", "prompt_tokens": 1},
            {"id": "msg_a", "role": "assistant", "content": "forged", "completion_tokens": 1, "total_tokens": 2},
        ],
    }]}
    answer = push(owner_api, body)
    assert answer["conversations"][0]["status"] == "unchanged"
    assert answer["conversations"][0]["messages"] == {"created": 0, "updated": 0, "unchanged": 2}
    assert Message.objects.get(public_id="msg_q").prompt_tokens == 7
    answer_row = Message.objects.get(public_id="msg_a")
    assert (answer_row.content, answer_row.completion_tokens, answer_row.total_tokens) == ("hello", 11, 18)


def test_a_client_may_fill_in_figures_of_its_own_messages_later(owner_api, owner, seed):
    del seed["conversations"][0]["messages"][0]["prompt_tokens"]
    push(owner_api, seed)
    assert Conversation.objects.get(owner=owner).input_tokens == 0
    seed["conversations"][0]["messages"][0]["prompt_tokens"] = 32
    seed["conversations"][0]["messages"][0]["content"] = "edited text is ignored: messages are append-only"
    answer = push(owner_api, seed)
    assert answer["conversations"][0]["messages"] == {"created": 0, "updated": 1, "unchanged": 1}
    message = Message.objects.get(public_id="msg_1753195195759_ei5l6ns9o")
    assert (message.prompt_tokens, message.content) == (32, "How many international airport in Japan?")
    assert Conversation.objects.get(owner=owner).input_tokens == 32


def test_a_message_id_from_another_conversation_is_invalid(owner_api, seed):
    push(owner_api, seed)
    other = make_conversation("conv_other", 0)
    other["messages"] = [dict(seed["conversations"][0]["messages"][0])]
    answer = push(owner_api, {"conversations": [make_conversation("conv_fine"), other]}, status=400)
    assert list(answer["error"]["details"]) == ["conversations[1].messages[0].id"]
    assert not Conversation.objects.filter(public_id__in=["conv_fine", "conv_other"]).exists()


def test_pushing_another_users_conversation_id_creates_the_pushers_own(owner_api, stranger_api, owner, stranger, seed):
    push(stranger_api, seed)
    theirs = Conversation.objects.get(owner=stranger)
    mine_body = copy.deepcopy(seed)
    mine_body["conversations"][0]["title"] = "mine"
    mine_body["conversations"][0]["updatedAt"] = "2030-01-01T00:00:00.000Z"
    answer = push(owner_api, mine_body)
    assert answer["conversations"][0]["status"] == "created"
    theirs.refresh_from_db()
    assert theirs.title == "How many international airport in Japan?"
    assert Conversation.objects.get(owner=owner).title == "mine"
    assert Message.objects.filter(owner=owner).count() == 2
    assert Message.objects.filter(owner=stranger).count() == 2
    pulled, _, _ = pull_all(stranger_api)
    assert [c["title"] for c in pulled] == ["How many international airport in Japan?"]


def test_conversation_fields_conflict_by_updated_at(owner_api, owner, seed):
    push(owner_api, seed)
    older = copy.deepcopy(seed)
    older["conversations"][0].update(title="stale title", updatedAt="2025-07-22T14:40:00.000Z")
    assert push(owner_api, older)["conversations"][0]["status"] == "unchanged"
    assert Conversation.objects.get(owner=owner).title == "How many international airport in Japan?"
    newer = copy.deepcopy(seed)
    newer["conversations"][0].update(title="Airports of Japan", updatedAt="2025-07-23T09:00:00.000Z", isActive=False)
    assert push(owner_api, newer)["conversations"][0]["status"] == "updated"
    stored = Conversation.objects.get(owner=owner)
    assert (stored.title, stored.is_active) == ("Airports of Japan", False)


def test_deleted_ids_become_tombstones_a_pull_reports(owner_api, owner, seed):
    push(owner_api, seed)
    _, _, cursor = pull_all(owner_api)
    answer = push(owner_api, {"deleted": ["conv_1753195195759_a209edwxv", "conv_never_seen"]})
    assert answer["deleted"] == [
        {"id": "conv_1753195195759_a209edwxv", "status": "deleted"},
        {"id": "conv_never_seen", "status": "unchanged"},
    ]
    assert Conversation.objects.get(owner=owner).deleted_at is not None
    assert not Conversation.objects.for_user(owner).exists()
    conversations, deleted, _ = pull_all(owner_api, cursor)
    assert (conversations, deleted) == ([], ["conv_1753195195759_a209edwxv"])
    # A first sign-in sees only live conversations.
    assert pull_all(owner_api)[:2] == ([], [])
    # An older copy pushed later does not bring it back.
    replay = push(owner_api, seed)
    assert replay["conversations"][0]["deleted"] is True
    assert Conversation.objects.get(owner=owner).deleted_at is not None


def test_messages_are_appended_to_a_known_conversation(owner_api, owner, seed):
    push(owner_api, seed)
    more = copy.deepcopy(seed)
    more["conversations"][0]["messages"].append(
        {"id": "msg_3", "role": "user", "content": "And in Korea?", "timestamp": "2025-07-22T14:41:00.000Z", "prompt_tokens": 40}
    )
    answer = push(owner_api, more)
    assert answer["conversations"][0] == {
        "id": "conv_1753195195759_a209edwxv", "status": "updated", "messages": {"created": 1, "updated": 0, "unchanged": 2}
    }
    stored = Conversation.objects.get(owner=owner)
    assert (stored.message_count, stored.input_tokens, stored.last_message_preview) == (3, 72, "And in Korea?")


def test_an_answer_must_point_at_a_user_message_of_its_conversation(owner_api, seed):
    seed["conversations"][0]["messages"][1]["user_message_id"] = "msg_nowhere"
    answer = push(owner_api, seed, status=400)
    assert list(answer["error"]["details"]) == ["conversations[0].messages[1].user_message_id"]


def test_a_body_over_the_maximum_is_refused_with_413(owner_api):
    body = {"conversations": [{"id": f"conv_{k}"} for k in range(push_limits().conversations + 1)]}
    answer = push(owner_api, body, status=413)
    assert answer["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert not Conversation.objects.exists()


def test_a_body_that_is_not_json_or_not_an_object_is_a_400(owner_api):
    response = owner_api.post("/api/v1/sync", "{nope", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_MESSAGE"
    assert push(owner_api, [1, 2], status=400)["error"]["code"] == "INVALID_MESSAGE"


def test_sync_needs_credentials(client):
    assert client.get("/api/v1/sync").status_code == 401
    assert client.post("/api/v1/sync", {}, content_type="application/json").status_code == 401


def test_a_forged_cursor_is_a_400(owner_api):
    response = owner_api.get("/api/v1/sync", {"since": "not-a-cursor!"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_MESSAGE"


def test_pull_pages_inside_one_version_without_losing_rows(owner_api):
    # One push stamps all 25 conversations with the same version; pages of 10 must split it safely.
    push(owner_api, {"conversations": [make_conversation(f"conv_{k:02d}") for k in range(25)]})
    pages = []
    since = None
    while True:
        params = {"limit": 10, **({"since": since} if since else {})}
        data = owner_api.get("/api/v1/sync", params).json()
        pages.append([c["id"] for c in data["conversations"]])
        since = data["cursor"]
        if not data["has_more"]:
            break
    assert [len(p) for p in pages] == [10, 10, 5]
    assert sorted(i for p in pages for i in p) == [f"conv_{k:02d}" for k in range(25)]
    # Caught up: nothing more until something changes.
    assert owner_api.get("/api/v1/sync", {"since": since}).json()["conversations"] == []


def test_a_change_after_a_cursor_shows_up_in_the_next_pull(owner_api, owner, seed):
    push(owner_api, seed)
    _, _, cursor = pull_all(owner_api)
    owner_api.patch("/api/v1/conversations/conv_1753195195759_a209edwxv", {"title": "renamed"}, format="json")
    conversations, _, _ = pull_all(owner_api, cursor)
    assert [c["title"] for c in conversations] == ["renamed"]


def test_a_message_stamped_by_another_writer_makes_its_conversation_due(owner_api, owner, seed):
    from django.db import transaction

    push(owner_api, seed)
    _, _, cursor = pull_all(owner_api)
    conv = Conversation.objects.get(owner=owner)
    with transaction.atomic():
        version = sync_clock.tick(owner.pk)
        Message.objects.create(owner=owner, conversation=conv, public_id="msg_x", role="user", content="x", version=version)
    conversations, _, _ = pull_all(owner_api, cursor)
    assert [m["id"] for m in conversations[0]["messages"]][-1] == "msg_x"


def test_the_push_cursor_skips_only_what_the_client_has_seen(owner_api):
    tablet_change = make_conversation("conv_from_tablet")
    push(owner_api, {"conversations": [make_conversation("conv_seen")]})
    _, _, up_to_date = pull_all(owner_api)
    # Up to date: the answer's cursor moves past the push itself.
    mine = push(owner_api, {"conversations": [make_conversation("conv_mine")], "since": up_to_date})
    assert pull_all(owner_api, mine["cursor"])[0] == []
    # Another device changes something the phone has not pulled; the phone's next push keeps its cursor.
    push(owner_api, {"conversations": [tablet_change]})
    again = push(owner_api, {"conversations": [make_conversation("conv_mine_2")], "since": mine["cursor"]})
    assert again["cursor"] == mine["cursor"]
    assert {c["id"] for c in pull_all(owner_api, again["cursor"])[0]} == {"conv_from_tablet", "conv_mine_2"}


def test_sync_has_its_own_throttle(owner_api, monkeypatch):
    from rest_framework.throttling import ScopedRateThrottle

    monkeypatch.setitem(ScopedRateThrottle.THROTTLE_RATES, "sync", "2/min")
    assert [owner_api.get("/api/v1/sync").status_code for _ in range(2)] == [200, 200]
    refused = owner_api.get("/api/v1/sync")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "RATE_LIMITED"


def test_a_push_leaves_an_answer_the_server_is_still_streaming_alone(owner_api, owner):
    conv = Conversation.objects.create(owner=owner, public_id="conv_live")
    question = Message.objects.create(owner=owner, conversation=conv, public_id="msg_q", role="user", content="hi")
    Message.objects.create(owner=owner, conversation=conv, public_id="msg_a", role="assistant", content="Hel",
                           status=Message.Status.STREAMING, user_message=question)
    body = {"conversations": [{"id": "conv_live", "messages": [
        {"id": "msg_q", "role": "user", "content": "hi", "prompt_tokens": 999},
        {"id": "msg_a", "role": "assistant", "content": "Hello there", "completion_tokens": 999, "user_message_id": "msg_q"},
    ]}]}
    assert push(owner_api, body)["conversations"][0]["messages"] == {"created": 0, "updated": 0, "unchanged": 2}
    assert list(Message.objects.order_by("pk").values_list("content", "prompt_tokens", "completion_tokens")) == [
        ("hi", None, None), ("Hel", None, None),
    ]


def test_an_edit_made_after_a_delete_brings_the_conversation_back(owner_api, owner, seed):
    push(owner_api, seed)
    push(owner_api, {"deleted": ["conv_1753195195759_a209edwxv"]})
    seed["conversations"][0].update(title="edited later", updatedAt="2099-01-01T00:00:00.000Z")
    answer = push(owner_api, seed)
    assert answer["conversations"][0]["status"] == "updated"
    stored = Conversation.objects.get(owner=owner)
    assert (stored.deleted_at, stored.title) == (None, "edited later")


def test_a_device_clock_in_the_future_does_not_win_every_later_conflict(owner_api, owner, seed):
    seed["conversations"][0].update(title="from the future", updatedAt="2099-01-01T00:00:00.000Z")
    push(owner_api, seed)
    stored = Conversation.objects.get(owner=owner)
    assert stored.updated_at.year < 2099
    from django.utils import timezone

    seed["conversations"][0].update(title="a real later edit", updatedAt=timezone.now().isoformat())
    push(owner_api, seed)
    assert Conversation.objects.get(owner=owner).title == "a real later edit"


def test_a_pull_page_also_stops_at_a_message_budget(owner_api, monkeypatch):
    from chat.sync import pull

    monkeypatch.setattr(pull, "PULL_MAX_MESSAGES", 10)
    push(owner_api, {"conversations": [make_conversation(f"conv_{k}", 4) for k in range(6)]})
    first = owner_api.get("/api/v1/sync", {"limit": 100}).json()
    assert (len(first["conversations"]), first["has_more"]) == (2, True)
    conversations, _, _ = pull_all(owner_api, first["cursor"])
    assert sorted(c["id"] for c in first["conversations"] + conversations) == [f"conv_{k}" for k in range(6)]


@pytest.mark.parametrize("role", [{}, [], None, 3])
def test_a_role_of_the_wrong_type_is_a_400_not_a_crash(owner_api, seed, role):
    seed["conversations"][0]["messages"][0]["role"] = role
    answer = push(owner_api, seed, status=400)
    assert list(answer["error"]["details"]) == ["conversations[0].messages[0].role"]
