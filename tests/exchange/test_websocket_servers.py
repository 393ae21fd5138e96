"""/ws/chat/ on real daphne servers, driven by a real WebSocket client (`websockets`, which like
OkHttp and URLSession sends no Origin header unless told to).

What Channels' in-process communicator cannot show is pinned here on the wire: a `?token=` client
without an Origin chats; a foreign Origin gets an HTTP 403; no credentials is a handshake that
completes and closes with 4401 (not an HTTP 403). And across processes: two servers on one
database, a socket open on server A is closed with 4401 within 10 s when its token is revoked, or
its session logs out, through server B, while the user's other sockets stay open.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.daphne import Daphne
from tests.e2e.conftest import _server_env, e2e_db  # noqa: F401 - e2e_db: the shared database

PASSWORD = "a-long-socket-password-1"
CLOSE_WITHIN = 10  # seconds: the contract's bound for closing a revoked or logged-out socket


def _env(database_url: str) -> dict[str, str]:
    env = _server_env(database_url)
    env.pop("REDIS_URL", None)  # no channel layer, no shared cache: only the database is shared
    env.pop("CHATLIMA_WS_AUTH_CHECK_SECONDS", None)  # the default interval is what is measured
    env["CHATLIMA_OFFLINE_CHUNK_DELAY_MS"] = "0"
    return env


class Server(Daphne):
    """A daphne on the shared database, and the tokens of this module's users (all with PASSWORD)."""

    def token(self, username: str, register: bool = False) -> str:
        if register:
            return self.register(username, PASSWORD)
        status, body = self.post_json("/api/v1/auth/token", {"username": username, "password": PASSWORD})
        assert status == 200, (status, body)
        return body["token"]


class Browser:
    """A cookie jar and the login and logout forms, as a browser would post them."""

    def __init__(self) -> None:
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def cookie(self, name: str) -> str:
        return next(c.value for c in self.jar if c.name == name)

    def login(self, server: Server, username: str) -> None:
        page = self.opener.open(f"{server.base}/accounts/login/", timeout=10).read().decode()
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode({"username": username, "password": PASSWORD, "csrfmiddlewaretoken": csrf})
        self.opener.open(f"{server.base}/accounts/login/", data=form.encode(), timeout=10).read()
        assert self.cookie("sessionid")

    def logout(self, server: Server) -> None:
        form = urllib.parse.urlencode({"csrfmiddlewaretoken": self.cookie("csrftoken")})
        self.opener.open(f"{server.base}/accounts/logout/", data=form.encode(), timeout=10).read()

    def headers(self) -> dict[str, str]:
        return {"Cookie": f"sessionid={self.cookie('sessionid')}"}


@pytest.fixture(scope="module")
def servers(e2e_db, tmp_path_factory) -> Iterator[tuple[Server, Server]]:  # noqa: F811 - the imported fixture
    logs = tmp_path_factory.mktemp("ws-servers")
    a = Server(_env(e2e_db.url), logs, name="a").start()
    try:
        b = Server(_env(e2e_db.url), logs, name="b").start()
    except BaseException:
        a.stop()
        raise
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def is_open(ws: ClientConnection) -> bool:
    ws.send(json.dumps({"type": "ping"}))
    return json.loads(ws.recv(timeout=5)) == {"type": "pong"}


def close_code(ws: ClientConnection, within: float) -> tuple[int | None, float]:
    """The close code the server sends (waiting at most `within` s) and how long it took."""
    started = time.monotonic()
    try:
        while True:
            ws.recv(timeout=max(0.01, within - (time.monotonic() - started)))
    except ConnectionClosed as closed:
        return (closed.rcvd.code if closed.rcvd else None), time.monotonic() - started
    except TimeoutError:
        return None, time.monotonic() - started


def test_a_token_client_without_an_origin_header_chats(servers):
    a, _ = servers
    token = a.token("noorigin", register=True)
    with connect(f"{a.ws}?token={token}", open_timeout=10) as ws:
        ws.send(json.dumps({"type": "send_message", "message": "Hello from a script", "client_message_id": "msg_s1"}))
        events = []
        while not events or events[-1]["type"] not in ("message_complete", "error"):
            events.append(json.loads(ws.recv(timeout=10)))
    assert events[-1]["type"] == "message_complete", events[-1]
    assert events[-1]["request_id"] == "msg_s1"


def test_foreign_origins_are_refused_and_missing_credentials_close_with_4401(servers):
    a, _ = servers
    token = a.token("origins", register=True)
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{a.ws}?token={token}", origin="http://evil.example", open_timeout=10)
    assert refused.value.response.status_code == 403
    with connect(f"{a.ws}?token={token}", origin=a.base, open_timeout=10) as ws:
        assert is_open(ws)
    for url, origin in [(a.ws, None), (a.ws, a.base), (f"{a.ws}?token=not-a-token", None)]:
        with connect(url, origin=origin, open_timeout=10) as ws:
            assert close_code(ws, 5)[0] == 4401, (url, origin)


def test_a_session_socket_needs_an_allowed_origin(servers):
    a, _ = servers
    a.token("cookies", register=True)
    browser = Browser()
    browser.login(a, "cookies")
    with connect(a.ws, origin=a.base, additional_headers=browser.headers(), open_timeout=10) as ws:
        assert is_open(ws)
    # A cookie alone, with no Origin to show where the page came from, authenticates nothing.
    with connect(a.ws, additional_headers=browser.headers(), open_timeout=10) as ws:
        assert close_code(ws, 5)[0] == 4401
    with pytest.raises(InvalidStatus) as refused:
        connect(a.ws, origin="http://evil.example", additional_headers=browser.headers(), open_timeout=10)
    assert refused.value.response.status_code == 403


def test_revoking_a_token_on_one_server_closes_its_sockets_on_another_within_10_seconds(servers):
    a, b = servers
    revoked = a.token("revoker", register=True)
    kept = a.token("revoker")
    with connect(f"{a.ws}?token={revoked}", open_timeout=10) as doomed, \
            connect(f"{a.ws}?token={kept}", open_timeout=10) as other:
        assert is_open(doomed) and is_open(other)
        assert b.post_json("/api/v1/auth/revoke", token=revoked)[0] == 204
        code, seconds = close_code(doomed, CLOSE_WITHIN + 1)
        assert code == 4401 and seconds <= CLOSE_WITHIN, (code, seconds)
        assert is_open(other)  # the same user's other device keeps its socket
    print(f"\nrevoked token's socket closed {seconds:.1f} s after the revoke on the other server")


def test_logging_out_on_one_server_closes_the_sessions_sockets_on_another_within_10_seconds(servers):
    a, b = servers
    token = a.token("leaver", register=True)
    browser = Browser()
    browser.login(a, "leaver")
    with connect(a.ws, origin=a.base, additional_headers=browser.headers(), open_timeout=10) as doomed, \
            connect(f"{a.ws}?token={token}", open_timeout=10) as other:
        assert is_open(doomed) and is_open(other)
        browser.logout(b)
        code, seconds = close_code(doomed, CLOSE_WITHIN + 1)
        assert code == 4401 and seconds <= CLOSE_WITHIN, (code, seconds)
        assert is_open(other)  # the token is not the session: it stays signed in
    print(f"\nlogged-out session's socket closed {seconds:.1f} s after the logout on the other server")
