"""Bad input never answers 500: NUL characters, lone surrogates, ids with a trailing newline and
dates out of range are a 4xx with the contract's JSON body, and change nothing (API.md "Error codes")."""

from __future__ import annotations

import json

import pytest

from accounts.models import User
from chat.ids import is_valid_id
from chat.models import Conversation, Message
from usage.models import ApiUsageLog

pytestmark = pytest.mark.django_db
# The exchange doors are async views: their database work runs on other threads, which need
# committed data (and, on PostgreSQL, a connection of their own from the pool).
exchange_door_db = pytest.mark.django_db(transaction=True)


def stored() -> tuple[int, ...]:
    return (User.objects.count(), Conversation.objects.count(), Message.objects.count(), ApiUsageLog.objects.count())


def post_raw(client, path: str, raw: str, method: str = "post"):
    """`raw` is sent as it is: json.dumps would refuse to write a lone surrogate's escape for us."""
    return getattr(client, method)(path, data=raw.encode(), content_type="application/json")


def refused(response, status: int = 400, code: str = "INVALID_MESSAGE") -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code and isinstance(error["message"], str) and isinstance(error["details"], dict)
    return error


@pytest.fixture
def conv(owner) -> Conversation:
    return Conversation.objects.create(owner=owner, public_id="conv_1", title="mine")


@exchange_door_db
@pytest.mark.parametrize("door", ["/api/v1/chat/send", "/api/v1/chat/stream"])
@pytest.mark.parametrize("field, raw", [
    ("message", '{"message": "a\\u0000b"}'),
    ("message", '{"message": "a\\ud800b"}'),
    ("message", '{"message": "\\udfff"}'),
    ("system_prompt", '{"message": "hi", "system_prompt": "be \\u0000 kind"}'),
    ("system_prompt", '{"message": "hi", "system_prompt": "\\ud83d"}'),
    ("model", '{"message": "hi", "model": "offline\\u0000demo"}'),
    ("model", '{"message": "hi", "model": "\\ud800"}'),
    ("message", '{"messages": [{"role": "user", "id": "msg_1", "content": "\\u0000"}]}'),
])
def test_nul_and_lone_surrogates_on_the_exchange_doors_are_a_400_naming_the_field(owner_api, door, field, raw):
    before = stored()
    error = refused(post_raw(owner_api, door, raw))
    assert error["details"]["field"] == field
    assert stored() == before


@pytest.mark.parametrize("field", ["title", "model", "system_prompt"])
@pytest.mark.parametrize("text", ["a\x00b", "\ud800"])
def test_nul_and_lone_surrogates_in_a_conversation_are_a_400_naming_the_field(owner_api, conv, field, text):
    raw = json.dumps({field: text})  # json.dumps writes a lone surrogate as its \ud800 escape
    before = stored()
    assert field in refused(post_raw(owner_api, "/api/v1/conversations", raw))["details"]
    assert field in refused(post_raw(owner_api, "/api/v1/conversations/conv_1", raw, "patch"))["details"]
    assert stored() == before
    conv.refresh_from_db()
    assert (conv.title, conv.model, conv.system_prompt) == ("mine", "", "")


@pytest.mark.parametrize("path", [
    "/api/v1/conversations/%00",
    "/api/v1/conversations/conv_1%00",
    "/api/v1/conversations/%00/messages",
    "/api/v1/token-usage?conversation_id=%00",
    "/api/v1/conversations?cursor=%00",
    "/api/v1/usage/history?start_date=2025-01-01%00",
    "/api/v1/usage/daily?%00=1",
    "/api/v1/sync?since=%00",
    "/c/%00/",
])
def test_a_nul_in_a_path_or_query_is_a_400(owner_api, conv, path):
    refused(owner_api.get(path))


def test_a_nul_in_a_path_changes_nothing(owner_api, conv):
    before = stored()
    refused(owner_api.delete("/api/v1/conversations/conv_1%00"))
    refused(owner_api.patch("/api/v1/conversations/conv_1%00", {"title": "x"}, format="json"))
    assert stored() == before
    assert Conversation.objects.get(pk=conv.pk).title == "mine"


@pytest.mark.parametrize("value", ["conv_1\n", "conv_1\r\n", "\nconv_1", "conv_1 "])
def test_an_id_must_match_its_pattern_as_a_whole_string(value):
    assert not is_valid_id(value)


@exchange_door_db
@pytest.mark.parametrize("body, field", [
    ({"message": "hi", "conversation_id": "conv_1\n"}, "conversation_id"),
    ({"message": "hi", "client_message_id": "msg_1\n"}, "client_message_id"),
    ({"message": "hi", "messages": [{"role": "user", "id": "msg_1\n", "content": "hi"}]}, "messages[0].id"),
])
def test_ids_with_a_trailing_newline_are_refused_by_the_exchange_doors(owner_api, conv, body, field):
    before = stored()
    error = refused(owner_api.post("/api/v1/chat/send", body, format="json"))
    assert error["details"]["field"] == field
    assert stored() == before


def test_a_conversation_id_with_a_trailing_newline_is_not_created_nor_found(owner_api, conv):
    before = stored()
    assert "id" in refused(owner_api.post("/api/v1/conversations", {"id": "conv_2\n"}, format="json"))["details"]
    assert stored() == before
    refused(owner_api.get("/api/v1/conversations/conv_1%0A"), 404, "CONVERSATION_NOT_FOUND")
    refused(owner_api.delete("/api/v1/conversations/conv_1%0A"), 404, "CONVERSATION_NOT_FOUND")
    refused(owner_api.get("/api/v1/token-usage", {"conversation_id": "conv_1\n"}))
    assert Conversation.objects.filter(pk=conv.pk, deleted_at=None).exists()


@pytest.mark.parametrize("path", ["/api/v1/usage/history", "/api/v1/usage/stats", "/api/v1/usage/daily",
                                  "/api/v1/usage/export.csv"])
@pytest.mark.parametrize("params", [
    {"start_date": "0001-01-01", "end_date": "9999-12-31"},
    {"end_date": "9999-12-31"},
    {"start_date": "9999-12-31T23:59:59-14:00"},
    {"start_date": "1969-12-31"},
    {"end_date": "2101-01-01T00:00:00Z"},
    {"start_date": "20250722"},
    {"start_date": " 2025-07-22"},
    {"start_date": "2025-07-22\n"},
    {"start_date": ""},
    {"start_date": "2025-07-22", "end_date": ["2025-07-23", "2025-07-24"]},
])
def test_dates_outside_1970_2100_or_not_iso_are_a_400(owner_api, path, params):
    refused(owner_api.get(path, params))


def test_dates_at_the_edges_of_the_range_are_answered(owner_api):
    # Offsets up to 23:59 are RFC 3339's; PostgreSQL itself takes none past 15:59.
    for path in ("/api/v1/usage/history", "/api/v1/usage/stats", "/api/v1/usage/export.csv"):
        for start, end in (("1970-01-01T00:00:00+14:00", "2100-12-31T23:59:59-14:00"),
                           ("2000-01-01", "2000-01-05T00:27:01+19:19"), ("1970-01-01T00:00:00+23:59", None)):
            ok = owner_api.get(path, {"start_date": start, **({"end_date": end} if end else {})})
            assert ok.status_code == 200, ok.content
    daily = owner_api.get("/api/v1/usage/daily", {"start_date": "2100-01-01", "end_date": "2100-12-31"})
    assert daily.status_code == 200 and daily.json() == {"days": []}


@pytest.mark.parametrize("path, params", [
    ("/api/v1/conversations", {"limit": "null"}),
    ("/api/v1/conversations", {"limit": "3017449855"}),
    ("/api/v1/conversations", {"limit": "0"}),
    ("/api/v1/conversations", {"limit": ["5", "6"]}),
    ("/api/v1/conversations/conv_1/messages", {"limit": "501"}),
    ("/api/v1/usage/history", {"limit": "1_0"}),
    ("/api/v1/usage/history", {"offset": "9" * 5000}),
])
def test_paging_values_outside_the_schema_are_a_400(owner_api, conv, path, params):
    refused(owner_api.get(path, params))


@pytest.mark.parametrize("method, path", [
    ("get", "/api/v1/no-such-endpoint"),
    ("get", "/api/v1/chat/send"),
    ("put", "/api/v1/chat/stream"),
])
def test_an_unknown_api_path_or_method_answers_the_contract_json(owner_api, method, path):
    response = getattr(owner_api, method)(path)
    assert response.status_code in (404, 405)
    refused(response, response.status_code, "NOT_FOUND" if response.status_code == 404 else "INVALID_MESSAGE")


def test_more_query_parameters_than_django_takes_is_a_json_400(owner_api):
    query = "&".join(f"p{n}=1" for n in range(1001))  # DATA_UPLOAD_MAX_NUMBER_FIELDS is 1,000
    assert refused(owner_api.get(f"/api/v1/conversations?{query}"))["details"] == {"field": "query"}


def test_a_form_with_more_fields_than_django_takes_is_a_json_400(client):
    form = "&".join(f"f{n}=1" for n in range(1001))
    response = client.post("/api/v1/auth/token", data=form, content_type="application/x-www-form-urlencoded")
    # The API takes JSON only: a form is a 415 whatever its size, never Django's HTML page.
    refused(response, 415, "INVALID_MESSAGE")


@pytest.mark.parametrize("path", ["/api/v1/auth/register", "/api/v1/auth/token"])
def test_the_auth_endpoints_take_json_only(client, path):
    response = client.post(path, {"username": "formuser", "password": "a-long-password-1"})  # multipart
    refused(response, 415, "INVALID_MESSAGE")
    assert not User.objects.filter(username="formuser").exists()
