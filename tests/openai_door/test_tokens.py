"""Named API tokens, the door and token on every usage row, a token's own budget, and usage broken
down by token in the usage API, on the usage page and in the admin report."""

from __future__ import annotations

import csv
import io

import pytest
from django.test import AsyncClient, Client
from rest_framework.test import APIClient

from accounts.models import ApiToken
from accounts.tokens import issue_token
from tests.conftest import make_user
from usage.models import ApiUsageLog, Budget, BudgetReservation

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.CHATLIMA_OFFLINE_CHUNK_DELAY_MS = 0
    settings.CHATLIMA_STREAM_BATCH_MS = 0
    settings.CHATLIMA_PARTIAL_SAVE_SECONDS = 0
    settings.CHATLIMA_MIN_OUTPUT_TOKENS = 16


def api(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def send(secret: str | None, message: str = "Hello door", **extra):
    client = APIClient()
    if secret:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client.post("/api/v1/chat/send", {"message": message, "model": "offline-demo", **extra}, format="json")


def test_a_token_is_issued_with_a_name_listed_renamed_and_revoked(owner, stranger):
    issued = APIClient().post("/api/v1/auth/token", {"username": "owner", "password": PASSWORD, "name": "my laptop"},
                              format="json").json()
    assert issued["name"] == "my laptop" and issued["token"]
    _, other = issue_token(owner, "the IDE")
    listed = api(issued["token"]).get("/api/v1/auth/tokens").json()["results"]
    assert [t["label"] for t in listed] == ["the IDE", "my laptop"]
    assert [t["current"] for t in listed] == [False, True]
    assert all(len(t["token_key"]) == 8 and issued["token"].startswith(t["token_key"]) or t["label"] == "the IDE"
               for t in listed)
    renamed = api(other).patch(f"/api/v1/auth/tokens/{issued['id']}", {"name": "work laptop", "token_limit": 5000},
                               format="json")
    assert renamed.status_code == 200 and renamed.json()["label"] == "work laptop"
    assert renamed.json()["token_limit"] == 5000
    assert api(other).delete(f"/api/v1/auth/tokens/{issued['id']}").status_code == 204
    assert api(issued["token"]).get("/api/v1/me").status_code == 401
    assert ApiToken.objects.get(pk=issued["id"]).revoked_at is not None
    assert [t["label"] for t in api(other).get("/api/v1/auth/tokens").json()["results"]] == ["the IDE"]


def test_a_strangers_token_is_404_and_changes_nothing(owner, stranger):
    mine, _ = issue_token(owner, "mine")
    _, theirs = issue_token(stranger, "theirs")
    assert api(theirs).patch(f"/api/v1/auth/tokens/{mine.pk}", {"name": "stolen"}, format="json").status_code == 404
    assert api(theirs).delete(f"/api/v1/auth/tokens/{mine.pk}").status_code == 404
    mine.refresh_from_db()
    assert mine.name == "mine" and mine.revoked_at is None


@pytest.mark.parametrize("change", [{"name": "x" * 101}, {"token_limit": -1}, {"token_limit": "ten"},
                                    {"cost_limit": "NaN"}, {"cost_limit": True}])
def test_a_bad_change_is_400_and_changes_nothing(owner, change):
    named, secret = issue_token(owner, "kept")
    response = api(secret).patch(f"/api/v1/auth/tokens/{named.pk}", change, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "INVALID_MESSAGE"
    named.refresh_from_db()
    assert (named.name, named.token_limit, named.cost_limit) == ("kept", None, None)


def test_each_usage_row_records_its_door_and_token(owner):
    named, secret = issue_token(owner, "the IDE")
    assert send(secret).status_code == 200
    client = Client()
    client.force_login(owner)
    assert client.post("/api/v1/chat/send", {"message": "From the page", "model": "offline-demo"},
                       content_type="application/json").status_code == 200
    rows = list(ApiUsageLog.objects.filter(user=owner).order_by("created_at"))
    assert rows[0].api_token_id == named.pk
    assert rows[0].metadata["door"] == "send" and rows[0].metadata["api_token"] == "the IDE"
    assert rows[1].api_token_id is None and rows[1].metadata["door"] == "send"
    assert "api_token" not in rows[1].metadata


async def test_the_sse_door_records_its_name_and_token(owner):
    from channels.db import database_sync_to_async

    named, secret = await database_sync_to_async(issue_token)(owner, "stream tool")
    response = await AsyncClient().post("/api/v1/chat/stream", {"message": "Hi", "model": "offline-demo"},
                                        content_type="application/json", headers={"authorization": f"Bearer {secret}"})
    b"".join([part async for part in response.streaming_content])
    row = await ApiUsageLog.objects.aget(user=owner)
    assert (row.metadata["door"], row.api_token_id) == ("sse", named.pk)


def test_a_tokens_own_budget_refuses_beyond_it_while_another_token_goes_on(owner):
    limited, limited_secret = issue_token(owner, "limited")
    _, free_secret = issue_token(owner, "unlimited")
    first = send(limited_secret)
    assert first.status_code == 200
    used = ApiUsageLog.objects.get(user=owner).total_tokens
    ApiToken.objects.filter(pk=limited.pk).update(token_limit=used + 20)
    refused = send(limited_secret, "Hello again, a second question")
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "TOKEN_LIMIT_EXCEEDED" and error["details"]["api_token"] == limited.pk
    assert error["details"]["tokens_used"] == used and "limited" in error["message"]
    assert ApiUsageLog.objects.filter(user=owner).count() == 1  # refused before any row
    assert send(free_secret, "Hello again, a second question").status_code == 200
    budget = Budget.objects.get(user=owner)
    assert budget.tokens_held == 0 and not BudgetReservation.objects.filter(state="held").exists()


def test_a_tokens_budget_clamps_the_answer_to_what_it_has_left(owner):
    limited, secret = issue_token(owner, "small")
    ApiToken.objects.filter(pk=limited.pk).update(token_limit=200)
    response = send(secret, "Hi", max_tokens=1000)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["max_tokens_clamped"] is True and data["max_tokens"] < 200
    row = ApiUsageLog.objects.get(user=owner)
    assert row.metadata["max_tokens_clamped"] is True
    assert BudgetReservation.objects.get(user=owner).api_token_id == limited.pk


def test_a_tokens_cost_limit_counts_its_rows_cost(owner, fake_openai):
    fake_openai.script(deltas=["Priced ", "answer."], usage={"prompt_tokens": 40, "completion_tokens": 60})
    limited, secret = issue_token(owner, "priced")
    assert send(secret, model="gpt-4o").status_code == 200
    spent = ApiUsageLog.objects.get(user=owner).cost_estimate
    assert spent > 0
    # The user's own budget has no cost limit: the token's is the only one.
    ApiToken.objects.filter(pk=limited.pk).update(cost_limit=spent)
    refused = send(secret, model="gpt-4o")
    assert refused.status_code == 403 and refused.json()["error"]["details"]["cost_used"] == f"{spent:.8f}"
    ApiToken.objects.filter(pk=limited.pk).update(cost_limit=spent * 1000)
    assert send(secret, model="gpt-4o").status_code == 200
    held = BudgetReservation.objects.filter(user=owner).order_by("created_at").last()
    assert held.cost > 0 and held.state == "settled"  # the hold carried its cost, then settled
    assert Budget.objects.get(user=owner).cost_held == 0


def test_the_usage_api_breaks_usage_down_by_token_and_door(owner, stranger):
    laptop, laptop_secret = issue_token(owner, "my laptop")
    ide, ide_secret = issue_token(owner, "the IDE")
    _, stranger_secret = issue_token(stranger, "theirs")
    for secret in (laptop_secret, laptop_secret, ide_secret):
        assert send(secret).status_code == 200
    assert send(stranger_secret).status_code == 200
    stats = api(ide_secret).get("/api/v1/usage/stats").json()
    by_token = {row["label"]: row for row in stats["by_token"]}
    assert set(by_token) == {"my laptop", "the IDE"}
    assert by_token["my laptop"]["requests"] == 2 and by_token["the IDE"]["requests"] == 1
    rows = ApiUsageLog.objects.filter(user=owner)
    assert by_token["my laptop"]["total_tokens"] == sum(r.total_tokens for r in rows if r.api_token_id == laptop.pk)
    assert [d["door"] for d in stats["by_door"]] == ["send"]
    only = api(ide_secret).get(f"/api/v1/usage/history?api_token={laptop.pk}").json()
    assert only["count"] == 2 and {r["api_token"] for r in only["history"]} == {"my laptop"}
    assert {r["door"] for r in only["history"]} == {"send"}
    filtered = api(ide_secret).get(f"/api/v1/usage/stats?api_token={ide.pk}").json()
    assert sum(s["total_requests"] for s in filtered["stats"]) == 1
    # A stranger's token id matches none of the caller's rows, and shows none of theirs.
    stranger_token = ApiToken.objects.get(user=stranger)
    assert api(ide_secret).get(f"/api/v1/usage/history?api_token={stranger_token.pk}").json()["count"] == 0
    assert api(ide_secret).get("/api/v1/usage/history?api_token=abc").status_code == 400
    export = api(ide_secret).get(f"/api/v1/usage/export.csv?api_token={laptop.pk}")
    table = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert len(table) == 2 and {r["api_token"] for r in table} == {"my laptop"} and {r["door"] for r in table} == {"send"}


def test_the_usage_page_lists_tokens_creates_and_revokes_them(owner, stranger):
    laptop, secret = issue_token(owner, "my laptop")
    assert send(secret).status_code == 200
    page = Client()
    page.force_login(owner)
    html = page.get("/usage/").content.decode()
    assert "Usage by API token" in html and "my laptop" in html
    created = page.post("/usage/tokens/new", {"name": "the IDE"}, follow=True).content.decode()
    assert "Copy it now" in created and ApiToken.objects.filter(user=owner, name="the IDE").exists()
    assert "Copy it now" not in page.get("/usage/").content.decode()  # shown once
    theirs = Client()
    theirs.force_login(stranger)
    assert theirs.post(f"/usage/tokens/{laptop.pk}/revoke").status_code == 404
    assert page.post(f"/usage/tokens/{laptop.pk}/revoke").status_code == 302
    laptop.refresh_from_db()
    assert laptop.revoked_at is not None and laptop.auth_token_id is None
    assert api(secret).get("/api/v1/me").status_code == 401


def test_the_admin_report_shows_usage_by_token(owner):
    _, secret = issue_token(owner, "my laptop")
    assert send(secret).status_code == 200
    admin = make_user("boss")
    admin.is_staff = admin.is_superuser = True
    admin.save()
    client = Client()
    client.force_login(admin)
    html = client.get("/admin/usage/dailyusagerollup/report/").content.decode()
    assert 'id="by-token-table"' in html and "my laptop" in html


async def test_the_websocket_door_records_its_name_and_token(owner):
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator

    from chatlima.asgi import application

    named, secret = await database_sync_to_async(issue_token)(owner, "phone app")
    ws = WebsocketCommunicator(application, f"/ws/chat/?token={secret}", headers=[(b"origin", b"http://testserver")])
    connected, _ = await ws.connect()
    assert connected
    await ws.send_json_to({"type": "send_message", "message": "From a phone", "model": "offline-demo"})
    while (await ws.receive_json_from(timeout=10))["type"] not in ("message_complete", "error"):
        pass
    await ws.disconnect()
    row = await ApiUsageLog.objects.aget(user=owner)
    assert (row.metadata["door"], row.api_token_id, row.status) == ("websocket", named.pk, "success")
