"""One spelling of a username for logins, sign-up and lockouts: stripped, NFKC, case-folded."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from rest_framework.test import APIClient

from accounts.forms import SignupForm
from accounts.models import User, canonical_username, sign_up
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

SPELLINGS = ["owner ", " owner", "owner\t", "owner\n", "OWNER", "Owner", "\u00a0owner", "ｏｗｎｅｒ"]


def test_every_spelling_has_one_canonical_form():
    assert {canonical_username(s) for s in SPELLINGS} == {"owner"}
    assert canonical_username("Straße") == canonical_username("STRASSE") == "strasse"
    assert canonical_username("owner") != canonical_username("own er")


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_the_login_page_logs_every_spelling_into_the_one_account(client, owner, spelling):
    response = client.post("/accounts/login/", {"username": spelling, "password": "correct-horse-battery"})
    assert response.status_code == 302
    assert client.get("/api/v1/me").json()["username"] == "owner"


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_the_token_endpoint_logs_every_spelling_into_the_one_account(owner, spelling):
    client = APIClient()
    response = client.post("/api/v1/auth/token", {"username": spelling, "password": "correct-horse-battery"},
                           format="json")
    assert response.status_code == 200, response.content
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['token']}")
    assert client.get("/api/v1/me").json()["username"] == "owner"


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_sign_up_refuses_a_username_taken_up_to_case_and_whitespace(client, owner, spelling):
    page = client.post("/accounts/signup/", {"username": spelling, "password1": "a-long-passphrase",
                                             "password2": "a-long-passphrase"})
    api = APIClient().post("/api/v1/auth/register", {"username": spelling, "password": "a-long-passphrase"},
                           format="json")
    assert page.status_code == 200 and "already exists" in page.content.decode()
    assert api.status_code == 400
    assert api.json()["error"]["code"] == "INVALID_MESSAGE"
    assert "already exists" in str(api.json()["error"]["details"]["username"])
    assert list(User.objects.values_list("username", flat=True)) == ["owner"]


def test_a_username_keeps_the_case_it_was_signed_up_with(client):
    response = client.post("/accounts/signup/", {"username": " MixedCase ", "password1": "a-long-passphrase",
                                                 "password2": "a-long-passphrase"})
    assert response.status_code == 302
    user = User.objects.get()
    assert (user.username, user.username_key) == ("MixedCase", "mixedcase")


def test_the_database_refuses_two_accounts_for_one_canonical_name(owner):
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create_user(username="OWNER", password="a-long-passphrase")


def test_a_sign_up_that_loses_a_race_gets_the_form_error_not_a_500(db):
    form = SignupForm({"username": "Racer", "password1": "a-long-passphrase", "password2": "a-long-passphrase"})
    assert form.is_valid()
    make_user("racer")  # the other sign-up commits between this one's check and its save
    assert sign_up(form) is None
    assert "already exists" in str(form.errors["username"])
    assert User.objects.filter(username_key="racer").count() == 1


def test_a_rename_moves_the_canonical_name_with_it(owner):
    owner.username = "Renamed"
    owner.save(update_fields=["username"])
    owner.refresh_from_db()
    assert owner.username_key == "renamed"
    assert APIClient().post("/api/v1/auth/token", {"username": "RENAMED", "password": "correct-horse-battery"},
                            format="json").status_code == 200


def test_bulk_created_users_get_their_canonical_name(db):
    User.objects.bulk_create([User(username="Bulk_One"), User(username="bulk_two")])
    assert sorted(User.objects.values_list("username_key", flat=True)) == ["bulk_one", "bulk_two"]


def test_the_admin_refuses_a_rename_onto_another_accounts_name(owner, stranger):
    from django.contrib.auth.forms import UserChangeForm

    class Form(UserChangeForm):
        class Meta(UserChangeForm.Meta):
            model = User

    data = {"username": " Owner", "date_joined": stranger.date_joined, "timezone": "UTC"}
    form = Form(data, instance=stranger)
    assert not form.is_valid()
    assert "already exists" in str(form.errors["username"])
