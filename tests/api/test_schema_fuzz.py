"""Fuzz the API from its own OpenAPI schema: no 5xx, and the schema and the server agree.

Schemathesis generates requests from /api/v1/schema/, both ones the schema allows (which must be
answered, not refused as invalid) and ones it forbids (which must be refused), and checks every
answer: never a 5xx, only documented status codes and content types, bodies (each server-sent
event too) matching the documented schemas. Fixed seed (derandomized), so CI is repeatable.

Runs the Django app in-process over WSGI, authenticated with a Bearer token: the REST API in the
test's transaction, the exchange doors (/chat/send, /chat/stream: real offline-model exchanges)
with committed data. Not fuzzed: token revocation, which would log the fuzzer out.

Some refusals depend on data or on several fields at once, which a schema cannot state; those
(listed in SEMANTIC_REFUSALS, each by its exact code and details) do not count as the server
rejecting valid data. Everything else does.
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings
from knox.models import AuthToken
from schemathesis.checks import not_a_server_error
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from chat.models import Conversation, Message
from tests.conftest import make_user

CHECKS = [
    not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
    response_schema_conformance, negative_data_rejection, positive_data_acceptance,
]
FUZZ = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "phases": [Phase.explicit, Phase.generate],
    "suppress_health_check": list(HealthCheck),
}


def _error(response) -> dict:
    try:
        return response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return {}


# (operation prefix, error code, details that must be included) of refusals a schema cannot state.
SEMANTIC_REFUSALS = [
    ("", "MODEL_UNAVAILABLE", {}),  # which model ids exist is data (GET /api/v1/models)
    ("GET /api/v1/conversations", "INVALID_MESSAGE", {"cursor": "invalid"}),  # cursors are the server's
    ("", "INVALID_MESSAGE", {"since": "invalid cursor"}),
    ("GET /api/v1/usage/", "INVALID_MESSAGE", {"start_date": "after end_date"}),  # one field against another
    ("GET /api/v1/usage/daily", "INVALID_MESSAGE", {"end_date": "range too long"}),
    ("POST /api/v1/conversations", "INVALID_MESSAGE", {"id": "deleted"}),  # ids of deleted conversations
    ("POST /api/v1/chat/", "INVALID_MESSAGE", {"field": "client_message_id"}),  # an id another message has
    ("POST /api/v1/chat/", "INVALID_MESSAGE", {"field": "regenerate"}),  # no such live answer (or with a message)
    ("POST /api/v1/chat/", "INVALID_MESSAGE", {"field": "edit_of"}),  # no such live user message
    ("POST /api/v1/auth/", "INVALID_MESSAGE", {}),  # wrong credentials, a taken name, a weak password
    # Whether a file's bytes read as its kind, and whether a URL resolves and answers, is data.
    ("POST /api/v1/conversations/{public_id}/attachments", "INVALID_MESSAGE", {"field": "file"}),
    ("POST /api/v1/conversations/{public_id}/attachments", "INVALID_MESSAGE", {"field": "url"}),
    ("POST /api/v1/conversations/{public_id}/attachments", "PAYLOAD_TOO_LARGE", {}),
]


# A push's items refused for what other items, or the stored history, hold (chat.sync.schema, chat.sync.push).
SYNC_CROSS_ITEM = (
    "This conversation appears twice in the body.", "This message id is also at ",
    "This conversation is also pushed in the same body.", "Must name a user message.",
    "Names a message of another conversation.", "This message id belongs to another of your conversations.",
    "Names no user message of this conversation.",
    "Dates are between",  # the schema's year pattern cannot see a time zone offset cross 1970 or 2100
)


def _is_semantic_refusal(case, response) -> bool:
    error = _error(response)
    label = f"{case.operation.method.upper()} {case.operation.path}"
    details = error.get("details") or {}
    if label == "POST /api/v1/sync" and error.get("code") == "INVALID_MESSAGE" and details and all(
        isinstance(text, str) and (text.startswith(SYNC_CROSS_ITEM) or text == "invalid cursor")
        for text in details.values()
    ):
        return True
    return any(
        label.startswith(prefix) and error.get("code") == code
        and details.items() <= (error.get("details") or {}).items()
        for prefix, code, details in SEMANTIC_REFUSALS
    )


# The schema is public (drf-spectacular serves it to anyone), so it loads at collection without a user.
schema = schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", get_wsgi_application()).exclude(
    path="/api/v1/auth/revoke"
)


@schema.hook
def filter_failure(context, failure, case, response) -> bool:
    """Keep every failure but a schema-valid request refused for a reason of SEMANTIC_REFUSALS."""
    return not (isinstance(failure, RejectedPositiveData) and _is_semantic_refusal(case, response))


@pytest.fixture
def fuzz_user(db):
    user = make_user("fuzzer")
    # Something to read back, so responses with data are checked against the schema too.
    conv = Conversation.objects.create(owner=user, public_id="conv_1", title="seeded")
    question = Message.objects.create(owner=user, conversation=conv, public_id="msg_q", role="user", content="hi", prompt_tokens=3)
    Message.objects.create(owner=user, conversation=conv, public_id="msg_a", role="assistant", content="hello",
                           completion_tokens=5, total_tokens=8, user_message=question)
    conv.recompute_totals()
    return user


@pytest.fixture
def keep_test_connection():
    """Like Django's test client: the real WSGI handler would close the connection after each
    request, which on PostgreSQL ends the test's transaction."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def unthrottled(monkeypatch):
    """Hundreds of generated calls per operation would otherwise mostly meet the throttle."""
    from rest_framework.throttling import SimpleRateThrottle

    for scope in ("user", "sync", "anon", "login"):
        monkeypatch.setitem(SimpleRateThrottle.THROTTLE_RATES, scope, "1000000/min")


@pytest.fixture
def bearer(fuzz_user, keep_test_connection, unthrottled) -> dict[str, str]:
    _, token = AuthToken.objects.create(fuzz_user)
    return {"Authorization": f"Bearer {token}"}


@schema.exclude(path_regex=r"^/api/v1/chat/").parametrize()
@hypothesis_settings(max_examples=40, **FUZZ)
@pytest.mark.django_db
def test_the_api_honours_its_schema(case, bearer):
    case.call_and_validate(headers=bearer, checks=CHECKS)


@schema.include(path_regex=r"^/api/v1/chat/").parametrize()
@hypothesis_settings(max_examples=30, **FUZZ)
@pytest.mark.django_db(transaction=True)
@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume asynchronous iterators")
def test_the_exchange_doors_honour_their_schema(case, bearer, settings):
    # Real exchanges with the offline model, which every fuzzed send reaches unless it is refused.
    settings.CHATLIMA_OFFLINE_CHUNK_DELAY_MS = 0
    case.call_and_validate(headers=bearer, checks=CHECKS)


def test_the_schema_describes_every_endpoint_of_the_contract(owner_api):
    paths = owner_api.get("/api/v1/schema/?format=json").json()["paths"]
    for path in (
        "/api/v1/sync", "/api/v1/conversations", "/api/v1/conversations/{public_id}", "/api/v1/models",
        "/api/v1/token-usage", "/api/v1/usage/stats", "/api/v1/usage/history", "/api/v1/usage/daily",
        "/api/v1/usage/export.csv", "/api/v1/chat/send", "/api/v1/chat/stream",
    ):
        assert path in paths, path
    push = paths["/api/v1/sync"]["post"]
    assert push["requestBody"]["content"]["application/json"]["schema"]
    assert {"200", "400", "413"} <= set(push["responses"])


def test_the_push_body_schema_comes_from_the_models_that_validate_it(owner_api, settings):
    settings.CHATLIMA_SYNC_MAX_CONVERSATIONS = 7
    schema = owner_api.get("/api/v1/schema/?format=json").json()
    push = schema["paths"]["/api/v1/sync"]["post"]
    assert push["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/SyncPushRequest"}
    assert "At most 7 conversations" in push["description"]  # the settings of the server that serves it
    parts = schema["components"]["schemas"]
    assert parts["SyncPushRequest"]["properties"]["conversations"]["items"] == {"$ref": "#/components/schemas/SyncConversationRequest"}
    message = parts["SyncMessageRequest"]
    assert message["required"] == ["id", "role"]
    assert message["properties"]["prompt_tokens"] == {"type": "integer", "minimum": 0, "maximum": 2147483647, "nullable": True}
    assert message["properties"]["originalModel"]["maxLength"] == 128
    assert parts["SyncConversationRequest"]["properties"]["createdAt"]["format"] == "date-time"
    # OpenAPI 3.0 has no null type: optional fields say `nullable`.
    assert '"null"' not in json.dumps(schema)


def test_the_swagger_page_is_served_from_local_assets(owner_api):
    page = owner_api.get("/api/v1/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/drf_spectacular_sidecar/" in html
    assert "cdn" not in html.lower()
