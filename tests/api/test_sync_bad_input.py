"""One push must never break an account: dates, NULs, lone surrogates and huge numbers are a 400."""

from __future__ import annotations

import gc
import json
import time

import pytest

from chat import sync_clock
from chat.models import Conversation, Message
from chat.sync.schema import parse_push
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


def _set(path: tuple, value):
    """A two-conversation body with `value` at `path` (a key of the last step missing when value is ABSENT)."""
    body = {"conversations": [make_conversation("conv_a", 2), make_conversation("conv_b", 2)]}
    target = body
    for step in path[:-1]:
        target = target[step]
    if value is ABSENT:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


ABSENT = object()
MESSAGE = ("conversations", 1, "messages", 1)


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("conversations", 1, "title"), 5, "Must be a string."),
        (("conversations", 1, "title"), "x" * 256, "At most 255 characters."),
        # Two rules broken: the length is named first, as it always was.
        (("conversations", 1, "title"), "x" * 256 + "\ud800", "At most 255 characters."),
        (("conversations", 1, "title"), "x\ud800", "Must not contain a lone surrogate (U+D800)."),
        (("conversations", 1, "systemPrompt"), "a\x00b", "Must not contain a NUL character."),
        (("conversations", 1, "isActive"), "yes", "Must be true or false."),
        (("conversations", 1, "createdAt"), "yesterday", "Must be an ISO 8601 timestamp."),
        (("conversations", 1, "createdAt"), 1753195195, "Must be an ISO 8601 timestamp."),
        (("conversations", 1, "id"), ABSENT, "Ids are 1 to 64 letters, digits, '_' or '-'."),
        (("conversations", 1, "id"), "conv_b\n", "Ids are 1 to 64 letters, digits, '_' or '-'."),
        (("conversations", 1, "messages"), {}, "Must be a list."),
        (("conversations", 1), 5, "Must be an object."),
        (MESSAGE, [], "Must be an object."),
        ((*MESSAGE, "role"), ABSENT, "One of user, assistant, system."),
        ((*MESSAGE, "content"), None, "Must be a string."),
        ((*MESSAGE, "completion_tokens"), True, "Token figures are whole numbers."),
        ((*MESSAGE, "completion_tokens"), 1.0, "Token figures are whole numbers."),
        ((*MESSAGE, "completion_tokens"), 10**30, "Token figures are between 0 and 2147483647."),
        ((*MESSAGE, "elapsed_time"), -1, "Token figures are between 0 and 2147483647."),
        ((*MESSAGE, "user_message_id"), "", "Must name a message id."),
        ((*MESSAGE, "user_message_id"), "msg_b_m1", "Must name a user message."),
        ((*MESSAGE, "user_message_id"), "msg_a_m0", "Names a message of another conversation."),
        ((*MESSAGE, "id"), "msg_a_m1", "This message id is also at conversations[0].messages[1]."),
        (("conversations", 1, "id"), "conv_a", "This conversation appears twice in the body."),
    ],
)
def test_each_refusal_keeps_its_wording(path, value, expected):
    with pytest.raises(ClientError) as refused:
        parse_push(_set(path, value))
    assert refused.value.code == "INVALID_MESSAGE"
    [(where, wording)] = refused.value.details.items()
    assert (where, wording) == (".".join(f"[{p}]" if isinstance(p, int) else p for p in path).replace(".[", "["), expected)


def test_a_message_refused_for_its_own_fields_takes_no_part_in_the_checks_across_items():
    body = _set((*MESSAGE, "content"), 5)
    body["conversations"][1]["messages"][1]["id"] = "msg_a_m1"  # would repeat an id, were the message valid
    with pytest.raises(ClientError) as refused:
        parse_push(body)
    assert refused.value.details == {"conversations[1].messages[1].content": "Must be a string."}


def test_deleted_ids_are_checked_and_a_repeated_one_is_answered_once(owner_api):
    body = {"conversations": [make_conversation("conv_a")], "deleted": ["conv_x", "bad id", "conv_a", "conv_x"]}
    with pytest.raises(ClientError) as refused:
        parse_push(body)
    assert refused.value.details == {
        "deleted[1]": "Must be a conversation id.", "deleted[2]": "This conversation is also pushed in the same body.",
    }
    body["deleted"] = ["conv_x", "conv_y", "conv_x"]
    answer = owner_api.post("/api/v1/sync", body, format="json").json()
    assert answer["deleted"] == [{"id": "conv_x", "status": "unchanged"}, {"id": "conv_y", "status": "unchanged"}]


def test_a_since_that_is_no_string_is_named_only_when_every_item_is_fine():
    body = {"conversations": [make_conversation("conv_a")], "since": 5}
    with pytest.raises(ClientError) as refused:
        parse_push(body)
    assert (refused.value.message, refused.value.details) == ("`since` must be a cursor string.", {"since": "invalid cursor"})
    body["conversations"][0]["title"] = 5
    with pytest.raises(ClientError) as refused:
        parse_push(body)
    assert refused.value.details == {"conversations[0].title": "Must be a string."}


def test_the_push_limits_are_read_when_a_push_comes(owner_api, settings):
    settings.CHATLIMA_SYNC_MAX_MESSAGES = 3
    response = owner_api.post("/api/v1/sync", {"conversations": [make_conversation("conv_a", 4)]}, format="json")
    assert response.status_code == 413, response.content
    assert response.json()["error"]["details"] == {"conversations": 1, "messages": 4, "deleted": 0}
    settings.CHATLIMA_SYNC_MAX_MESSAGES = 4
    assert owner_api.post("/api/v1/sync", {"conversations": [make_conversation("conv_a", 4)]}, format="json").status_code == 200
