from __future__ import annotations

import pytest
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.models import User

pytestmark = pytest.mark.django_db


def test_register_returns_a_token_that_authenticates_as_bearer(settings):
    client = APIClient()
    response = client.post("/api/v1/auth/register", {"username": "mobile", "password": "a-long-passphrase"}, format="json")
    assert response.status_code == 201
    token = response.json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    me = client.get("/api/v1/me")
    assert me.status_code == 200
    assert me.json()["username"] == "mobile"
    budget = client.get("/api/v1/budget")
    assert budget.status_code == 200 and budget.json()["token_limit"] == settings.CHATLIMA_DEFAULT_MONTHLY_TOKEN_LIMIT


def test_register_refuses_a_taken_username_and_a_weak_password(owner):
    client = APIClient()
    taken = client.post("/api/v1/auth/register", {"username": "owner", "password": "a-long-passphrase"}, format="json")
    weak = client.post("/api/v1/auth/register", {"username": "newbie", "password": "123"}, format="json")
    assert taken.status_code == 400
    assert taken.json()["error"]["code"] == "INVALID_MESSAGE"
    assert weak.status_code == 400
    assert not User.objects.filter(username="newbie").exists()


def test_token_endpoint_issues_one_token_per_device(owner):
    client = APIClient()
    first = client.post("/api/v1/auth/token", {"username": "owner", "password": "correct-horse-battery"}, format="json")
    second = client.post("/api/v1/auth/token", {"username": "owner", "password": "correct-horse-battery"}, format="json")
    assert first.status_code == 200 and second.status_code == 200
    assert first.json()["token"] != second.json()["token"]
    assert AuthToken.objects.filter(user=owner).count() == 2


def test_tokens_are_stored_hashed(owner):
    token = APIClient().post(
        "/api/v1/auth/token", {"username": "owner", "password": "correct-horse-battery"}, format="json"
    ).json()["token"]
    stored = AuthToken.objects.get(user=owner)
    assert token not in (stored.digest, stored.token_key)
    assert stored.expiry is not None and stored.expiry > timezone.now()


def test_wrong_credentials_answer_400_with_the_contract_body(owner):
    response = APIClient().post("/api/v1/auth/token", {"username": "owner", "password": "nope"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_MESSAGE"


def test_repeated_failed_logins_are_throttled(owner):
    client = APIClient()
    codes = [
        client.post("/api/v1/auth/token", {"username": "owner", "password": f"wrong{i}"}, format="json").status_code
        for i in range(11)
    ]
    assert codes[:10] == [400] * 10
    assert codes[10] == 429
    right = client.post("/api/v1/auth/token", {"username": "owner", "password": "correct-horse-battery"}, format="json")
    assert right.status_code == 429


def test_no_credentials_answer_401_with_unauthenticated_code():
    response = APIClient().get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"


def test_a_bad_bearer_token_answers_401():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-real-token")
    assert client.get("/api/v1/me").status_code == 401


def test_revoked_token_no_longer_authenticates(owner_api):
    assert owner_api.post("/api/v1/auth/revoke").status_code == 204
    assert owner_api.get("/api/v1/me").status_code == 401


def test_expired_token_no_longer_authenticates(owner):
    instance, token = AuthToken.objects.create(owner)
    AuthToken.objects.filter(pk=instance.pk).update(expiry=timezone.now() - timezone.timedelta(seconds=1))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.get("/api/v1/me").status_code == 401
