"""Fuzz the REST API from its own OpenAPI schema: no 5xx, and every answer matches what the schema says.

Runs the Django app in-process over WSGI (same thread, same test transaction),
authenticated with a Bearer token. The exchange doors (/chat/send, /chat/stream)
are described in the schema but not fuzzed here: each call is a model exchange
with its own suite (tests/exchange). Nor is token revocation, which would log
the fuzzer out.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings
from knox.models import AuthToken
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from chat.models import Conversation, Message
from tests.conftest import make_user

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


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


# The schema is public (drf-spectacular serves it to anyone), so it loads at collection without a user.
schema = (
    schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", get_wsgi_application())
    .exclude(path_regex=r"^/api/v1/chat/")  # the exchange doors: their own suite drives them
    .exclude(path="/api/v1/auth/revoke")
    .exclude(path="/api/v1/stats")  # staff only
)


@schema.parametrize()
@hypothesis_settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
@pytest.mark.django_db
def test_the_api_honours_its_schema(case, bearer):
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


def test_the_swagger_page_is_served_from_local_assets(owner_api):
    page = owner_api.get("/api/v1/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/drf_spectacular_sidecar/" in html
    assert "cdn" not in html.lower()
