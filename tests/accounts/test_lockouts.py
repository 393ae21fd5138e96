"""Failed-login lockouts (accounts/login_throttle.py): per account under every spelling, per client
address, said with how long they last, and the same for the page, the API and the admin."""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from tests.conftest import make_user

pytestmark = pytest.mark.django_db

RIGHT = "correct-horse-battery"
SPELLINGS = ["owner ", " owner", "owner\t", "owner\n", "OWNER", "Owner", "ｏｗｎｅｒ"]


@pytest.fixture(autouse=True)
def _no_drf_login_throttle(monkeypatch):
    """The token endpoint's DRF throttle (10/min per address) would answer before the lockout does."""
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setitem(SimpleRateThrottle.THROTTLE_RATES, "login", "100000/min")


def page(client, username, password, address="10.1.1.1", **extra):
    return client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=address, **extra)


def token(username, password, address="10.1.1.1", **extra):
    return APIClient().post("/api/v1/auth/token", {"username": username, "password": password}, format="json",
                            REMOTE_ADDR=address, **extra)


def assert_api_locked(response, scope: str) -> dict:
    assert response.status_code == 429, response.content
    error = response.json()["error"]
    assert error["code"] == "RATE_LIMITED"
    assert error["details"]["scope"] == scope
    assert settings.CHATLIMA_LOGIN_LOCKOUT_SECONDS - 5 <= error["details"]["retry_after"] <= settings.CHATLIMA_LOGIN_LOCKOUT_SECONDS
    assert response["Retry-After"] == str(error["details"]["retry_after"])
    return error


def test_ten_failures_lock_every_spelling_out_and_refuse_the_right_password(client, owner):
    assert [page(client, "owner", "wrong").status_code for _ in range(10)] == [200] * 10
    for spelling in SPELLINGS + ["owner"]:
        locked = page(client, spelling, RIGHT)
        assert locked.status_code == 429, spelling
        assert "logins are locked for 15 minutes" in locked.content.decode()
        assert 895 <= int(locked["Retry-After"]) <= 900
        error = assert_api_locked(token(spelling, RIGHT), "account")
        assert "locked for 15 minutes" in error["message"]
    assert "_auth_user_id" not in client.session


def test_failures_under_different_spellings_count_for_one_account(client, owner):
    for n in range(10):
        spelling = SPELLINGS[n % len(SPELLINGS)]
        response = page(client, spelling, "wrong") if n % 2 else token(spelling, "wrong")
        assert response.status_code in (200, 400)
    assert_api_locked(token("owner", RIGHT), "account")


def test_the_account_is_locked_from_every_address(client, owner):
    for n in range(10):
        assert token("owner", "wrong", address=f"10.2.0.{n}").status_code == 400
    assert_api_locked(token("owner", RIGHT, address="10.9.9.9"), "account")


def test_the_lockout_lifts_when_its_time_is_up(client, owner, settings):
    settings.CHATLIMA_LOGIN_MAX_FAILURES = 3
    settings.CHATLIMA_LOGIN_LOCKOUT_SECONDS = 2
    assert [token("owner", "wrong").status_code for _ in range(3)] == [400] * 3
    locked = token("owner", RIGHT)
    assert locked.status_code == 429 and locked.json()["error"]["details"]["retry_after"] in (1, 2)
    assert "second" in locked.json()["error"]["message"]
    time.sleep(3.1)
    assert token("owner", RIGHT).status_code == 200


def test_a_success_starts_the_account_again(client, owner):
    for _ in range(9):
        assert token("owner", "wrong").status_code == 400
    assert token("owner", RIGHT).status_code == 200
    assert [token("owner", "wrong").status_code for _ in range(9)] == [400] * 9
    assert token("owner", RIGHT).status_code == 200


def test_one_address_trying_many_usernames_is_locked_out(client, owner):
    checked = sum(page(client, f"sprayed-{n}", "wrong").status_code == 200 for n in range(40))
    assert checked == settings.CHATLIMA_LOGIN_ADDRESS_MAX_FAILURES == 20
    locked = page(client, "owner", RIGHT)
    assert locked.status_code == 429 and "for your address" in locked.content.decode()
    assert_api_locked(token("owner", RIGHT), "address")
    # The account is not locked: from elsewhere its owner logs in.
    assert token("owner", RIGHT, address="10.3.3.3").status_code == 200


def test_the_api_stops_a_spraying_address_too(owner):
    statuses = [token(f"sprayed-{n}", "wrong", address="10.4.4.4").status_code for n in range(40)]
    assert statuses == [400] * 20 + [429] * 20


def test_forwarded_for_does_not_make_a_new_address(client, owner):
    for n in range(20):
        assert page(client, f"sprayed-{n}", "wrong", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}").status_code == 200
    assert_api_locked(token("owner", RIGHT, HTTP_X_FORWARDED_FOR="192.0.2.200"), "address")


def test_forwarded_for_names_the_client_when_a_trusted_proxy_sets_it(client, owner, settings):
    settings.CHATLIMA_TRUSTED_PROXIES = 1  # one proxy, which appends the address it saw
    for n in range(20):
        forwarded = f"198.51.100.{n}, 192.0.2.1"  # what the client wrote, then what the proxy saw
        assert page(client, f"sprayed-{n}", "wrong", address="10.0.0.1", HTTP_X_FORWARDED_FOR=forwarded).status_code == 200
    assert_api_locked(token("owner", RIGHT, address="10.0.0.1", HTTP_X_FORWARDED_FOR="192.0.2.1"), "address")
    # Another client behind the same proxy is another address.
    assert token("owner", RIGHT, address="10.0.0.1", HTTP_X_FORWARDED_FOR="192.0.2.2").status_code == 200


def test_the_drf_login_throttle_counts_remote_addr_not_forwarded_for(monkeypatch, owner):
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setitem(SimpleRateThrottle.THROTTLE_RATES, "login", "10/min")
    statuses = [token("owner", RIGHT, HTTP_X_FORWARDED_FOR=f"192.0.2.{n}").status_code for n in range(11)]
    assert statuses == [200] * 10 + [429]


def test_the_admin_login_is_counted_and_locked_like_the_others(client, db):
    staff = make_user("boss")
    staff.is_staff = staff.is_superuser = True
    staff.save()
    for _ in range(10):
        assert client.post("/admin/login/", {"username": "boss", "password": "wrong"},
                           REMOTE_ADDR="10.1.1.1").status_code == 200
    refused = client.post("/admin/login/?next=/admin/", {"username": "BOSS ", "password": RIGHT}, REMOTE_ADDR="10.1.1.1")
    assert refused.status_code == 200 and "_auth_user_id" not in client.session
    assert_api_locked(token("boss", RIGHT), "account")


def test_a_locked_out_login_changes_nothing_and_tells_nothing_about_the_account(client, owner):
    """A name nobody has is locked out exactly like a real one: the lockout is no oracle."""
    for name in ("owner", "nobody"):
        for _ in range(10):
            token(name, "wrong", address=f"10.5.5.{len(name)}")
    real = token("owner", RIGHT, address="10.6.6.6").json()["error"]
    unknown = token("nobody", RIGHT, address="10.6.6.6").json()["error"]
    assert real["message"] == unknown["message"] and real["details"]["scope"] == unknown["details"]["scope"]
    owner.refresh_from_db()
    assert owner.last_login is None


def test_no_cache_that_decides_lives_in_process_memory():
    """settings.CACHES: Redis with REDIS_URL, else the database; "figures" never process memory either."""
    backends = {alias: config["BACKEND"] for alias, config in settings.CACHES.items()}
    expected = "chatlima.cache.RedisCache" if settings.REDIS_URL else "chatlima.cache.DatabaseCache"
    assert backends["default"] == expected
    assert not any("locmem" in backend.lower() for backend in backends.values()), backends
