"""Bodies over the size limit answer the contract's JSON 413 on every path, and JSON nested deeper
than 64 levels a 400, on every JSON endpoint, before any parser recurses into it."""

from __future__ import annotations

import json
from io import BytesIO

import pytest
from django.core.handlers.asgi import ASGIRequest

from accounts.models import User
from chat.models import Conversation, Message

MAX_JSON_DEPTH = 64  # API.md: deeper is refused
pytestmark = pytest.mark.django_db

JSON_DOORS = [
    ("post", "/api/v1/chat/send"),
    ("post", "/api/v1/chat/stream"),
    ("post", "/api/v1/conversations"),
    ("patch", "/api/v1/conversations/conv_1"),
    ("post", "/api/v1/sync"),
    ("post", "/api/v1/auth/token"),
    ("post", "/api/v1/auth/register"),
    ("post", "/api/v1/auth/revoke"),
]


def stored() -> tuple[int, ...]:
    return User.objects.count(), Conversation.objects.count(), Message.objects.count()


def nested(depth: int, inner: str = "1") -> str:
    return '{"message": ' * depth + inner + "}" * depth


@pytest.fixture
def conv(owner) -> Conversation:
    return Conversation.objects.create(owner=owner, public_id="conv_1", title="mine")


@pytest.mark.parametrize("method, path", JSON_DOORS)
@pytest.mark.parametrize("body", [nested(1000), "[" * 1000 + "]" * 1000, "[" * 100_000, nested(65)])
def test_json_nested_too_deep_is_a_400_on_every_json_endpoint(owner_api, conv, method, path, body):
    before = stored()
    response = getattr(owner_api, method)(path, data=body.encode(), content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["error"] == {
        "code": "INVALID_MESSAGE", "message": "JSON may nest at most 64 levels deep.",
        "details": {"field": "body", "max_depth": MAX_JSON_DEPTH},
    }
    assert stored() == before


def test_the_exchange_doors_read_deep_json_whatever_its_content_type_says(owner_api):
    for content_type in ("text/plain", "application/x-www-form-urlencoded", ""):
        response = owner_api.generic("POST", "/api/v1/chat/send", nested(1000).encode(), content_type=content_type)
        assert response.status_code == 400, (content_type, response.content)


@pytest.mark.django_db(transaction=True)  # the exchange door's own work runs on other threads
def test_json_64_levels_deep_is_parsed_as_usual(owner_api, conv):
    # Deep but allowed: the view itself answers (the message is not text), not the depth check.
    response = owner_api.post("/api/v1/chat/send", data=nested(MAX_JSON_DEPTH).encode(), content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"field": "message"}


@pytest.mark.parametrize("body, deep", [
    (json.dumps({"text": "[" * 5000}), False),  # brackets inside a string are text
    (json.dumps({"text": '\\"' + "[" * 5000}), False),  # so are those after an escaped quote
    (json.dumps([{"a": [[1]]}] * 10_000), False),  # wide is fine
    ("[" * 64 + "]" * 64, False),
    ("[" * 65 + "]" * 65, True),
    (json.dumps({"a": "\\"}) + "[" * 65, True),  # an escaped backslash ends before the quote
    ('"unterminated' + "[" * 65, False),  # a parser stops at the string, never recursing
    ("[1]]" + "[" * 66, True),  # openers after a stray closer still count (a parser would stop there)
    ("]" + "[" * 65, False),  # a parser fails at the first character
])
def test_json_depth_is_found_without_parsing(body, deep):
    from chatlima.middleware import json_too_deep

    assert json_too_deep(body.encode()) is deep


def test_a_body_over_the_default_limit_is_a_json_413(owner_api):
    body = b'{"message": "' + b"a" * (33 * 1024 * 1024) + b'"}'
    response = owner_api.post("/api/v1/chat/send", data=body, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert response.json()["error"]["details"] == {"max_bytes": 32 * 1024 * 1024}


@pytest.mark.parametrize("method, path, content_type", [
    *[(method, path, "application/json") for method, path in JSON_DOORS],
    ("post", "/api/v1/conversations", "multipart/form-data; boundary=xyz"),
    ("post", "/api/v1/conversations", "application/x-www-form-urlencoded"),
    ("post", "/accounts/login/", "application/x-www-form-urlencoded"),
    ("post", "/accounts/signup/", "multipart/form-data; boundary=xyz"),
    ("post", "/no/such/page/", "text/plain"),
])
def test_a_body_over_the_limit_is_a_json_413_on_every_path(owner_api, conv, settings, method, path, content_type):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    before = stored()
    response = owner_api.generic(method.upper(), path, b"x" * 1001, content_type=content_type)
    assert response.status_code == 413, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert stored() == before


def test_a_body_without_a_content_length_is_held_to_the_limit_too(settings):
    """A chunked upload has no Content-Length for Django's own check to read."""
    from chatlima.middleware import refuse_bad_input

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    scope = {"type": "http", "method": "POST", "path": "/api/v1/chat/send", "query_string": b"",
             "headers": [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")]}
    too_big = refuse_bad_input(ASGIRequest(scope, BytesIO(b"x" * 1001)))
    assert too_big is not None and too_big.status_code == 413
    assert refuse_bad_input(ASGIRequest(scope, BytesIO(b'{"message": "hi"}'))) is None


def test_a_bad_content_length_is_a_400(owner_api):
    response = owner_api.generic("POST", "/api/v1/chat/send", b"{}", content_type="application/json",
                                 CONTENT_LENGTH="lots")
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"field": "Content-Length"}
