"""Two real servers on one database: failed logins, lockouts and DRF's throttles are counted once
for both, in the shared cache, on Redis (REDIS_URL, as in CI) and on the default without it (the
database cache).

* failures counted through one server lock the account on the other, for every spelling of the
  username (surrounding whitespace, case), and the right password is refused while it lasts;
* the lockout says how long it lasts: the API's 429 RATE_LIMITED carries `details.retry_after`;
* parallel guesses through both servers check at most the limit's number of passwords;
* one client address spraying usernames is stopped, whichever server it talks to;
* a DRF throttle's count is the same on both servers.

Each test talks from its own loopback address (127.0.0.N), so its address counts are its own.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import threading
import uuid
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest

from tests.daphne import Daphne
from tests.e2e.conftest import _server_env

PASSWORD = "a-long-lockout-password-1"
# Lower than the defaults (10 and 20, tests/accounts uses those): every failure costs the servers a
# real password hash (about a second here), so fewer failures keep this module quick.
MAX_FAILURES = 4
ADDRESS_MAX_FAILURES = 6
LOCKOUT_SECONDS = 900  # the default
USER_THROTTLE = 5  # per minute, set below for both servers


def spellings(username: str) -> list[str]:
    """The username as other people might type it: all of them are the same account."""
    return [f"{username} ", f" {username}", f"{username}\t", f"{username}\n", username.upper(), username.title()]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    text: str

    def json(self) -> dict:
        return json.loads(self.text)


class Client:
    """HTTP from one loopback address (so the server's REMOTE_ADDR is ours), with the page's cookies."""

    def __init__(self, port: int, address: str) -> None:
        self.port, self.address = port, address
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> Answer:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60, source_address=(self.address, 0))
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            text = response.read().decode()
            for name, value in response.getheaders():
                if name.lower() == "set-cookie":
                    cookie = value.split(";", 1)[0]
                    self.cookies[cookie.split("=", 1)[0]] = cookie.split("=", 1)[1]
            return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, text)
        finally:
            connection.close()

    def api(self, path: str, payload: dict, token: str | None = None) -> Answer:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.request("POST", path, json.dumps(payload).encode(), headers)

    def token(self, username: str, password: str) -> Answer:
        return self.api("/api/v1/auth/token", {"username": username, "password": password})

    def page_login(self, username: str, password: str) -> Answer:
        form = self.request("GET", "/accounts/login/")
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
        body = urlencode({"username": username, "password": password, "csrfmiddlewaretoken": csrf}).encode()
        return self.request("POST", "/accounts/login/", body, {"Content-Type": "application/x-www-form-urlencoded"})


_addresses = iter(range(10, 250))


@dataclass
class Servers:
    backend: str
    ports: tuple[int, int]

    def clients(self) -> tuple[Client, Client]:
        """A client of each server, both from one fresh loopback address."""
        address = f"127.0.0.{next(_addresses)}"
        return Client(self.ports[0], address), Client(self.ports[1], address)

    def username(self, base: str) -> str:
        return f"{base}-{self.backend}"


def _env(url: str, backend: str, prefix: str) -> dict[str, str]:
    env = _server_env(url)
    env.update({"CHATLIMA_CACHE_PREFIX": prefix, "CHATLIMA_LOGIN_THROTTLE": "100000/min",
                "CHATLIMA_USER_THROTTLE": f"{USER_THROTTLE}/min",
                "CHATLIMA_LOGIN_MAX_FAILURES": str(MAX_FAILURES),
                "CHATLIMA_LOGIN_ADDRESS_MAX_FAILURES": str(ADDRESS_MAX_FAILURES)})
    if backend == "database":
        env.pop("REDIS_URL", None)
    return env


@pytest.fixture(scope="module", params=["database", "redis"])
def servers(request, e2e_db, tmp_path_factory):
    backend = request.param
    if backend == "redis" and not os.environ.get("REDIS_URL"):
        pytest.skip("needs REDIS_URL (a real Redis)")
    env = _env(e2e_db.url, backend, f"lockout-test-{uuid.uuid4().hex[:10]}")
    logs = tmp_path_factory.mktemp(f"servers-{backend}")
    daphnes = [Daphne(env, logs, name="a"), Daphne(env, logs, name="b")]
    try:
        for daphne in daphnes:
            daphne.start()
        yield Servers(backend, (daphnes[0].port, daphnes[1].port))
    finally:
        for daphne in daphnes:
            daphne.stop()


def _register(client: Client, username: str) -> str:
    answer = client.api("/api/v1/auth/register", {"username": username, "password": PASSWORD})
    assert answer.status == 201, answer.text
    return answer.json()["token"]


def _assert_api_locked(answer: Answer, scope: str) -> int:
    assert answer.status == 429, (answer.status, answer.text)
    error = answer.json()["error"]
    assert error["code"] == "RATE_LIMITED"
    assert error["details"]["scope"] == scope
    retry_after = error["details"]["retry_after"]
    assert LOCKOUT_SECONDS - 60 < retry_after <= LOCKOUT_SECONDS
    assert answer.headers["retry-after"] == str(retry_after)
    assert "15 minutes" in error["message"]
    return retry_after


def _assert_page_locked(answer: Answer) -> None:
    assert answer.status == 429, (answer.status, answer.text[-500:])
    assert "logins are locked for 15 minutes" in answer.text
    assert "sessionid" not in answer.headers.get("set-cookie", "")


def test_failures_through_one_server_lock_every_spelling_out_on_the_other(servers):
    a, b = servers.clients()
    victim = servers.username("victim")
    _register(a, victim)
    wrong = [a.token(victim, f"wrong-{n}").status for n in range(MAX_FAILURES)]
    assert wrong == [400] * MAX_FAILURES

    retry_after = _assert_api_locked(b.token(victim, PASSWORD), "account")
    for spelling in spellings(victim):
        _assert_api_locked(b.token(spelling, PASSWORD), "account")
        _assert_page_locked(b.page_login(spelling, PASSWORD))
        _assert_page_locked(a.page_login(spelling, PASSWORD))
    print(f"\n{servers.backend}: {len(wrong)} failures on server A; server B refused the right password "
          f"under {1 + 2 * len(spellings(victim))} spellings and doors, retry_after {retry_after} s")


def test_failures_spread_over_both_servers_and_spellings_add_up(servers):
    a, b = servers.clients()
    victim = servers.username("spread")
    _register(a, victim)
    names = spellings(victim)
    for n in range(MAX_FAILURES):
        client = (a, b)[n % 2]
        spelling = names[n % len(names)]
        answer = client.token(spelling, "wrong") if n % 3 else client.page_login(spelling, "wrong")
        assert answer.status in (200, 400), (n, answer.status)  # the page re-renders its form with 200
        assert "locked" not in answer.text
    _assert_api_locked(a.token(victim, PASSWORD), "account")
    _assert_page_locked(b.page_login(victim, PASSWORD))


def test_parallel_guesses_through_both_servers_check_at_most_the_limit(servers):
    a, b = servers.clients()
    victim = servers.username("parallel")
    _register(a, victim)
    guesses = 3 * MAX_FAILURES
    statuses: list[int] = []
    start = threading.Barrier(guesses)

    def guess(n: int) -> None:
        start.wait()
        statuses.append((a, b)[n % 2].token(victim, f"guess-{n}").status)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(guesses)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [400] * MAX_FAILURES + [429] * (guesses - MAX_FAILURES), statuses
    print(f"\n{servers.backend}: {guesses} parallel guesses through two servers: {statuses.count(400)} passwords checked")


def test_one_address_spraying_usernames_is_stopped_on_both_servers(servers):
    a, b = servers.clients()
    owner = servers.username("sprayed")
    _register(a, owner)
    checked = 0
    for n in range(2 * ADDRESS_MAX_FAILURES):
        answer = (a, b)[n % 2].page_login(f"nobody-{servers.backend}-{n}", "wrong")
        if answer.status == 200:
            checked += 1
        else:
            _assert_page_locked(answer)
    assert checked == ADDRESS_MAX_FAILURES
    _assert_api_locked(b.token(owner, PASSWORD), "address")
    # The account itself is not locked: the same user from another address logs in.
    elsewhere, _ = servers.clients()
    assert elsewhere.token(owner, PASSWORD).status == 200
    print(f"\n{servers.backend}: one address spraying {2 * ADDRESS_MAX_FAILURES} usernames over two servers: {checked} checked")


def test_a_drf_throttle_counts_once_for_both_servers(servers):
    a, b = servers.clients()
    token = _register(a, servers.username("throttled"))
    statuses = [(a, b)[n % 2].request("GET", "/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status
                for n in range(USER_THROTTLE + 1)]
    assert statuses == [200] * USER_THROTTLE + [429], statuses
