from __future__ import annotations

import pytest

from accounts.models import User

pytestmark = pytest.mark.django_db


def test_chat_page_needs_a_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_login_page_renders_a_labelled_form(client):
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<label for="id_username">' in html and '<label for="id_password">' in html


def test_signup_creates_the_user_with_a_default_budget_and_logs_in(client, settings):
    response = client.post(
        "/accounts/signup/", {"username": "newbie", "password1": "a-long-passphrase", "password2": "a-long-passphrase"}
    )
    assert response.status_code == 302
    assert User.objects.filter(username="newbie").exists()
    assert client.get("/").status_code == 200
    # The budget comes with the defaults on first use (usage.models.Budget.objects.for_user).
    assert client.get("/api/v1/budget").json()["token_limit"] == settings.CHATLIMA_DEFAULT_MONTHLY_TOKEN_LIMIT


def test_login_then_logout(client, owner):
    response = client.post("/accounts/login/", {"username": "owner", "password": "correct-horse-battery"})
    assert response.status_code == 302
    assert client.get("/").status_code == 200
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_failed_page_logins_are_throttled(client, owner):
    for _ in range(10):
        assert client.post("/accounts/login/", {"username": "owner", "password": "wrong"}).status_code == 200
    locked = client.post("/accounts/login/", {"username": "owner", "password": "correct-horse-battery"})
    assert locked.status_code == 429
    assert b"Too many failed attempts" in locked.content


def test_chat_page_lists_only_the_users_own_conversations(client, owner, stranger):
    from chat.models import Conversation

    Conversation.objects.create(owner=owner, public_id="conv_mine", title="Mine")
    Conversation.objects.create(owner=stranger, public_id="conv_theirs", title="Theirs")
    client.force_login(owner)
    html = client.get("/").content.decode()
    assert "Mine" in html and "Theirs" not in html
