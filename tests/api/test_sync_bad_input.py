"""One push must never break an account: dates, NULs, lone surrogates and huge numbers are a 400."""

from __future__ import annotations

import gc
import json
import time

import pytest

from chat import sync_clock
from chat.models import Conversation, Message
from chat.sync import parse_push
from chatlima.errors import ClientError
from tests.api.conftest import make_conversation, pull_all

pytestmark = pytest.mark.django_db


def post_raw(client, raw: str):
    """The body as a client writes it: `\\ud800` escapes stay lone surrogates after parsing."""
    return client.post("/api/v1/sync", raw, content_type="application/json")


def assert_refused(response, details: dict[str, str] | list[str], owner) -> None:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "INVALID_MESSAGE"
    if isinstance(details, dict):
        assert error["details"] == details
    else:
        assert sorted(error["details"]) == sorted(details)
    assert not Conversation.objects.exists()
    assert not Message.objects.exists()
    assert sync_clock.current(owner.pk) == 0


def assert_account_works(client) -> None:
    assert client.get("/api/v1/sync").status_code == 200
    assert client.get("/api/v1/conversations").status_code == 200


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00+14:00",  # year 1 BC in UTC
        "9999-12-31T23:59:59-14:00",  # year 10000 in UTC
        "0001-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "1970-01-01T00:00:00+00:01",  # 1969-12-31T23:59 in UTC
        "2101-01-01T00:00:00Z",
        "2100-12-31T23:59:59-00:01",  # 2101-01-01T00:00:59 in UTC
    ],
)
@pytest.mark.parametrize("field", ["createdAt", "updatedAt"])
def test_a_conversation_date_outside_1970_2100_is_a_400(owner_api, owner, seed, field, value):
    seed["conversations"][0][field] = value
    response = owner_api.post("/api/v1/sync", seed, format="json")
    assert_refused(response, [f"conversations[0].{field}"], owner)
    assert "1970" in response.json()["error"]["details"][f"conversations[0].{field}"]
    assert_account_works(owner_api)


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "1900-06-01T12:00:00Z"])
def test_a_message_timestamp_outside_1970_2100_is_a_400(owner_api, owner, seed, value):
    seed["conversations"][0]["messages"][1]["timestamp"] = value
    response = owner_api.post("/api/v1/sync", seed, format="json")
    assert_refused(response, ["conversations[0].messages[1].timestamp"], owner)
    assert_account_works(owner_api)


def test_dates_exactly_at_the_edges_are_accepted_and_a_moment_beyond_is_not(owner_api, owner, seed):
    conversation = seed["conversations"][0]
    conversation["createdAt"] = "1969-12-31T23:59:59.999Z"
    conversation["messages"][1]["timestamp"] = "2101-01-01T00:00:00Z"
    response = owner_api.post("/api/v1/sync", seed, format="json")
    assert_refused(response, ["conversations[0].createdAt", "conversations[0].messages[1].timestamp"], owner)

    conversation["createdAt"] = "1970-01-01T00:00:00Z"
    conversation["updatedAt"] = "2100-12-31T23:59:59Z"
    conversation["messages"][0]["timestamp"] = "1970-01-01T00:00:00Z"
    conversation["messages"][1]["timestamp"] = "2100-12-31T23:59:59Z"
    response = owner_api.post("/api/v1/sync", seed, format="json")
    assert response.status_code == 200, response.content
    [pulled] = pull_all(owner_api)[0]
    assert pulled["createdAt"] == "1970-01-01T00:00:00.000Z"
    assert [m["timestamp"] for m in pulled["messages"]] == ["1970-01-01T00:00:00.000Z", "2100-12-31T23:59:59.000Z"]
    assert owner_api.get(f"/api/v1/conversations/{conversation['id']}").status_code == 200


CONVERSATION_STRINGS = ["title", "model", "systemPrompt"]
MESSAGE_STRINGS = ["content", "model", "originalModel", "contentType", "completion_id"]


@pytest.mark.parametrize("bad", ["\\u0000", "\\ud800", "\\udfff", "a\\udc00b"], ids=["nul", "high", "low", "inside"])
@pytest.mark.parametrize("field", CONVERSATION_STRINGS)
def test_nul_or_lone_surrogate_in_a_conversation_string_is_a_400(owner_api, owner, field, bad):
    body = {"conversations": [make_conversation("conv_fine"), make_conversation("conv_bad")]}
    body["conversations"][1][field] = "PLACEHOLDER"
    raw = json.dumps(body).replace("PLACEHOLDER", f"x{bad}y")
    response = post_raw(owner_api, raw)
    assert_refused(response, [f"conversations[1].{field}"], owner)
    assert_account_works(owner_api)


@pytest.mark.parametrize("bad", ["\\u0000", "\\ud800", "\\udbff\\u0041"], ids=["nul", "high", "unpaired"])
@pytest.mark.parametrize("field", MESSAGE_STRINGS)
def test_nul_or_lone_surrogate_in_a_message_string_is_a_400(owner_api, owner, field, bad):
    body = {"conversations": [make_conversation("conv_a", 2), make_conversation("conv_b", 4), make_conversation("conv_c", 4)]}
    body["conversations"][2]["messages"][3][field] = "PLACEHOLDER"
    raw = json.dumps(body).replace("PLACEHOLDER", f"text{bad}more")
    response = post_raw(owner_api, raw)
    assert_refused(response, [f"conversations[2].messages[3].{field}"], owner)
    assert_account_works(owner_api)


def test_a_surrogate_pair_and_other_control_characters_are_kept_a_lone_surrogate_is_not(owner_api, owner):
    body = {"conversations": [make_conversation("conv_emoji", 2)]}
    body["conversations"][0]["messages"][0]["content"] = "PLACEHOLDER"
    raw = json.dumps(body)
    assert_refused(post_raw(owner_api, raw.replace("PLACEHOLDER", "smile \\ude00\\ud83d")),
                   ["conversations[0].messages[0].content"], owner)
    response = post_raw(owner_api, raw.replace("PLACEHOLDER", "tab\\there \\ud83d\\ude00 bell\\u0007"))
    assert response.status_code == 200, response.content
    assert Message.objects.get(public_id="msg_emoji_m0").content == "tab\there \U0001f600 bell\x07"


@pytest.mark.parametrize("raw", ["1:99999999999999999999999", "1:5:99999999999999999999999", "1:9223372036854775808"])
def test_a_cursor_with_numbers_too_large_is_a_400_on_pull_and_push(owner_api, owner, seed, raw):
    import base64

    cursor = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
    pulled = owner_api.get("/api/v1/sync", {"since": cursor})
    assert pulled.status_code == 400, pulled.content
    assert pulled.json()["error"]["details"] == {"since": "invalid cursor"}
    seed["since"] = cursor
    pushed = owner_api.post("/api/v1/sync", seed, format="json")
    assert pushed.status_code == 400, pushed.content
    assert not Conversation.objects.exists()


def invalid_body(n_messages: int) -> dict:
    """`n_messages` messages in conversations of 20, each with one bad token figure."""
    conversations = [make_conversation(f"conv_{k}", 20) for k in range(-(-n_messages // 20))]
    for conversation in conversations:
        for message in conversation["messages"]:
            message["prompt_tokens" if message["role"] == "user" else "completion_tokens"] = -1
    return {"conversations": conversations}


def seconds_to_refuse(body: dict, n_messages: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        with pytest.raises(ClientError) as refused:
            parse_push(body)
        best = min(best, time.perf_counter() - start)
        assert len(refused.value.details) == n_messages
    return best


def test_validation_time_grows_linearly_with_the_number_of_invalid_messages():
    small, large = 1_000, 8_000
    ratio = seconds_to_refuse(invalid_body(large), large) / seconds_to_refuse(invalid_body(small), small)
    # Linear: about 8 times longer for 8 times the body; quadratic was about 64 times.
    assert ratio < 24, ratio
