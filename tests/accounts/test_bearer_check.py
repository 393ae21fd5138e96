"""The Bearer check (accounts/authentication.py): one read per request, the same answers as knox's.

* a good token authenticates with one query, its name included (the doors' `Via`, no second read);
* a wrong secret with a real key, a garbled token and an expired one are refused (401), and the
  expired one is deleted on use;
* the user's other expired tokens are not swept per request but by the daily task, which deletes
  only expired ones and keeps their names;
* a token issued before names existed still gets its unnamed ApiToken.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from knox.models import AuthToken
from rest_framework import exceptions
from rest_framework.test import APIRequestFactory

from accounts.authentication import BearerTokenAuthentication
from accounts.models import ApiToken
from accounts.tasks import delete_expired_tokens
from accounts.tokens import issue_token, named_token

pytestmark = pytest.mark.django_db


def _check(secret: str):
    request = APIRequestFactory().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {secret}")
    return BearerTokenAuthentication().authenticate(request)


def test_a_good_token_and_its_name_take_one_query(owner):
    named, secret = issue_token(owner, "my laptop")
    with CaptureQueriesContext(connection) as queries:
        user, auth_token = _check(secret)
        found = named_token(auth_token)
        # The one literal statement reads whole rows: the user and the name as a queryset loads them.
        seen = (user.username, user.timezone, user.is_active, user.date_joined, found.created_at,
                found.auth_token.digest, auth_token.expiry)
    assert (user.pk, found.pk, found.name) == (owner.pk, named.pk, "my laptop")
    assert len(queries) == 1, [q["sql"] for q in queries]
    stored = AuthToken.objects.get(pk=auth_token.pk)
    assert seen == (owner.username, owner.timezone, True, owner.date_joined, named.created_at, stored.digest,
                    stored.expiry)


@pytest.mark.parametrize("mangle", [lambda s: s[:-4] + ("aaaa" if s[-4:] != "aaaa" else "bbbb"), lambda s: s + "\x00",
                                    lambda s: "x" * 8])
def test_wrong_or_garbled_tokens_are_refused(owner, mangle):
    _, secret = issue_token(owner, "phone")
    with pytest.raises(exceptions.AuthenticationFailed):
        _check(mangle(secret))


def test_an_expired_token_is_refused_and_deleted_the_others_wait_for_the_task(owner, client):
    _, live = issue_token(owner, "live")
    expired, old = issue_token(owner, "expired")
    other_expired, _ = issue_token(owner, "forgotten device")
    past = timezone.now() - timezone.timedelta(seconds=1)
    AuthToken.objects.filter(pk__in=[expired.auth_token_id, other_expired.auth_token_id]).update(expiry=past)
    with pytest.raises(exceptions.AuthenticationFailed):
        _check(old)
    assert not AuthToken.objects.filter(pk=expired.auth_token_id).exists()  # deleted on use
    # A request with the live token leaves the forgotten one (knox swept it per request).
    assert _check(live)[0].pk == owner.pk
    assert AuthToken.objects.filter(pk=other_expired.auth_token_id).exists()
    assert delete_expired_tokens() == 1
    assert not AuthToken.objects.filter(pk=other_expired.auth_token_id).exists()
    assert _check(live)[0].pk == owner.pk  # the live one stays
    names = set(ApiToken.objects.filter(user=owner).values_list("name", flat=True))
    assert names == {"live", "expired", "forgotten device"}


def test_a_token_without_a_name_gets_an_unnamed_one(owner):
    _, secret = AuthToken.objects.create(owner)
    _, auth_token = _check(secret)
    named = named_token(auth_token)
    assert (named.user_id, named.name, named.auth_token_id) == (owner.pk, "", auth_token.pk)
    _, again = _check(secret)
    assert named_token(again).pk == named.pk
