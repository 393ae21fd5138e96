"""WebSocket authentication: the browser's session, or `?token=` for other clients; and the watch
that closes a socket once its token is revoked or its session logs out.

Origins: a socket that sends an `Origin` must come from an allowed host (else the handshake gets an
HTTP 403). One that sends none (scripts and mobile apps: Python `websockets`, OkHttp, URLSession)
is let through, but only its `?token=` can authenticate it: its cookies are ignored, since a
browser always sends an Origin and a cookie alone proves nothing about the page that opened the
socket.

Revocation: each event loop keeps one `SocketWatch`. Every `CHATLIMA_WS_AUTH_CHECK_SECONDS` (5 s)
it asks the database, in one read for all of that loop's sockets (`live_credentials`), which of
their tokens and sessions still authenticate, and closes the others with 4401. The database is the
truth (revoke deletes the knox token row, logout deletes the session row), so a revoke or logout
through any server process closes the socket on every process within one interval.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from importlib import import_module
from urllib.parse import parse_qs

from channels.auth import AuthMiddleware
from channels.db import database_sync_to_async
from channels.security.websocket import OriginValidator
from channels.sessions import CookieMiddleware, InstanceSessionWrapper, SessionMiddleware
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.db.models import Q
from django.utils import timezone
from knox.models import get_token_model
from rest_framework import exceptions

from accounts.authentication import BearerTokenAuthentication
from chatlima.db import pool_exhausted

logger = logging.getLogger(__name__)

CREDENTIAL_SCOPE_KEY = "chatlima.credential"
BUSY_SCOPE_KEY = "chatlima.database_busy"  # set when the handshake's database read found no free connection
MAX_TOKEN_CHARS = 256
CHECK_CHUNK = 500  # keys per IN (...): well under every database's limit on parameters


@dataclass(frozen=True)
class Credential:
    """What authenticated a socket: a knox token (by its digest) or a session (by its key)."""

    kind: str  # "token" or "session"
    key: str


# --- the handshake -------------------------------------------------------------------------------


class OriginOrTokenValidator(OriginValidator):
    """Channels' origin check, except that a socket without an Origin header is let through (the
    auth middleware then only accepts its `?token=`)."""

    def valid_origin(self, parsed_origin) -> bool:
        return parsed_origin is None or self.validate_origin(parsed_origin)


def AllowedHostsOrTokenOriginValidator(application):  # noqa: N802 - mirrors channels' AllowedHostsOriginValidator
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = ["localhost", "127.0.0.1", "[::1]"]
    return OriginOrTokenValidator(application, allowed_hosts)


def _plausible_token(token: str) -> bool:
    # Anything else could never match a knox token, and a NUL would not even reach the database.
    return 0 < len(token) <= MAX_TOKEN_CHARS and token.isascii() and token.isprintable()


def _plausible_session_key(scope) -> bool:
    # Django's keys are lowercase letters and digits; a cookie such as "\000..." (a NUL once
    # unquoted) would fail in PostgreSQL rather than simply match nothing.
    key = scope["session"].session_key
    return key is not None and key.isascii() and key.isalnum()


@database_sync_to_async
def user_for_token(token: str):
    """The token's user and its credential, or (AnonymousUser, None). Knox's own check: a read (an
    expired token is deleted), no transaction."""
    if not _plausible_token(token):
        return AnonymousUser(), None
    try:
        user, auth_token = BearerTokenAuthentication().authenticate_credentials(token.encode())
    except exceptions.AuthenticationFailed:
        return AnonymousUser(), None
    return user, Credential("token", auth_token.digest)


class _TokenAuthMiddleware(AuthMiddleware):
    async def resolve_scope(self, scope) -> None:
        try:
            await self._resolve(scope)
        except Exception as exc:
            if not pool_exhausted(exc):
                raise
            # No connection came free in time: the consumer accepts, says SERVICE_UNAVAILABLE, closes.
            scope["user"]._wrapped = AnonymousUser()
            scope[CREDENTIAL_SCOPE_KEY] = None
            scope[BUSY_SCOPE_KEY] = True

    async def _resolve(self, scope) -> None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        token = query.get("token", [""])[0]
        credential = None
        if token:
            scope["user"]._wrapped, credential = await user_for_token(token)
        elif any(name == b"origin" for name, _ in scope.get("headers", [])) and _plausible_session_key(scope):
            # The origin validator outside has vouched for this Origin: the session may authenticate.
            await super().resolve_scope(scope)
            if scope["user"].is_authenticated and scope["session"].session_key:
                credential = Credential("session", scope["session"].session_key)
        else:
            scope["user"]._wrapped = AnonymousUser()
        scope[CREDENTIAL_SCOPE_KEY] = credential


class SocketSessionMiddleware(SessionMiddleware):
    """channels' SessionMiddleware, handing a WebSocket the server's own `send`. Its wrapper saves
    a session only on `http.response.start`, which a socket never sends, so on a socket it only looked
    at the session for every frame on the way out (10.8% of a streaming process's samples, py-spy
    --gil). HTTP scopes keep the wrapper."""

    async def __call__(self, scope, receive, send):
        wrapper = InstanceSessionWrapper(scope, send)
        await wrapper.resolve_session()
        return await self.inner(wrapper.scope, receive, send if scope["type"] == "websocket" else wrapper.send)


def TokenOrSessionAuthMiddleware(inner):  # noqa: N802 - mirrors channels' AuthMiddlewareStack
    return CookieMiddleware(SocketSessionMiddleware(_TokenAuthMiddleware(inner)))


# --- revocation ----------------------------------------------------------------------------------


def _chunks(keys: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(keys), CHECK_CHUNK):
        yield keys[start:start + CHECK_CHUNK]


def live_credentials(credentials: Iterable[Credential]) -> set[Credential]:
    """Which of these credentials still authenticate: tokens whose row exists, has not expired and
    whose user is active; sessions that exist and have not expired.

    Reads only, no transaction and no lock: one primary-key `IN (...)` query for the tokens and one
    for the sessions (per 500 keys), whatever the number of sockets. Sessions kept outside the
    database (cache, signed cookies) are loaded one by one through their engine.
    """
    wanted = set(credentials)
    tokens = sorted(c.key for c in wanted if c.kind == "token")
    sessions = sorted(c.key for c in wanted if c.kind == "session")
    now = timezone.now()
    live: set[Credential] = set()
    for chunk in _chunks(tokens):
        rows = get_token_model().objects.filter(digest__in=chunk, user__is_active=True).filter(
            Q(expiry__isnull=True) | Q(expiry__gt=now))
        live.update(Credential("token", digest) for digest in rows.values_list("digest", flat=True))
    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    if issubclass(store_class, DatabaseSessionStore):  # db and cached_db: the row is the truth
        model = store_class.get_model_class()
        for chunk in _chunks(sessions):
            rows = model.objects.filter(session_key__in=chunk, expire_date__gt=now)
            live.update(Credential("session", key) for key in rows.values_list("session_key", flat=True))
    else:
        live.update(Credential("session", key) for key in sessions if SESSION_KEY in store_class(key).load())
    return live


class SocketWatch:
    """The authenticated sockets of one event loop, their credentials checked together every interval."""

    def __init__(self) -> None:
        self.sockets: dict[object, tuple[Credential, Callable[[], Awaitable[None]]]] = {}
        self._task: asyncio.Task | None = None
        self._closing: set[asyncio.Task] = set()

    def add(self, socket: object, credential: Credential, on_revoked: Callable[[], Awaitable[None]]) -> None:
        interval = settings.CHATLIMA_WS_AUTH_CHECK_SECONDS
        if not interval:
            return  # checking switched off
        self.sockets[socket] = (credential, on_revoked)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run(float(interval)))

    def remove(self, socket: object) -> None:
        self.sockets.pop(socket, None)
        if not self.sockets and self._task is not None:
            self._task.cancel()  # nothing left to watch: stop sleeping (a loop may be closing)
            self._task = None

    async def _run(self, interval: float) -> None:
        while self.sockets:
            await asyncio.sleep(interval)
            watched = dict(self.sockets)
            try:
                live = await database_sync_to_async(live_credentials, thread_sensitive=settings.CHATLIMA_DB_THREAD_SENSITIVE)(
                    {credential for credential, _ in watched.values()})
            except Exception:  # the database is the truth: when it cannot answer, look again next time
                logger.warning("checking %d sockets' credentials failed", len(watched), exc_info=True)
                continue
            for socket, (credential, on_revoked) in watched.items():
                if credential not in live and socket in self.sockets:  # still open, not yet closed
                    del self.sockets[socket]
                    task = asyncio.ensure_future(on_revoked())
                    self._closing.add(task)
                    task.add_done_callback(self._closing.discard)


_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SocketWatch] = weakref.WeakKeyDictionary()


def watch() -> SocketWatch:
    """This event loop's watch."""
    loop = asyncio.get_running_loop()
    found = _watches.get(loop)
    if found is None:
        found = _watches[loop] = SocketWatch()
    return found
