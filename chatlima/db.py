"""PostgreSQL connections come from one bounded pool per process; a pool exhausted too long is a 503.

Settings (`chatlima/settings.py`, DATABASES) give every process Django's psycopg 3 connection pool
of `CHATLIMA_DB_POOL_SIZE` connections: a burst of requests waits for a free connection instead of
opening one each, and waits at most `CHATLIMA_DB_POOL_TIMEOUT` seconds. Past that psycopg_pool
raises `PoolTimeout` (Django wraps it in its own `OperationalError`); here it becomes
`ServiceUnavailable`, the contract's error body with the extension code `SERVICE_UNAVAILABLE` and
HTTP 503: raised by the exchange pipeline's `run_db` (so the doors frame it like every other
`ClientError`: a JSON 503 over HTTP, an `error` frame on a WebSocket), and answered by
`ServiceUnavailableMiddleware` for any other view. A timed-out wait happens before the connection is
taken, so the request has changed nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.deprecation import MiddlewareMixin
from psycopg_pool import PoolTimeout, TooManyRequests

from chatlima.errors import ClientError, error_body

logger = logging.getLogger(__name__)

CODE = "SERVICE_UNAVAILABLE"


class ServiceUnavailable(ClientError):
    """No database connection came free in time: try again shortly (HTTP 503, Retry-After)."""

    def __init__(self) -> None:
        super().__init__(
            CODE, f"The server is busy: no database connection came free within {pool_timeout():g} s. "
            "Try again shortly.",
            {"reason": "database_busy", "retry_after": retry_after()},
        )

    @property
    def http_status(self) -> int:
        return 503


def pool_timeout() -> float:
    """How long a request waits for a free connection: the pool's own setting."""
    pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
    return float(pool.get("timeout", 30.0)) if isinstance(pool, dict) else settings.CHATLIMA_DB_POOL_TIMEOUT


def retry_after() -> int:
    return max(1, round(pool_timeout()))


def pool_exhausted(exc: BaseException | None) -> bool:
    """Whether `exc` is (or was raised from) psycopg_pool's PoolTimeout or TooManyRequests."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, (PoolTimeout, TooManyRequests, ServiceUnavailable)):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def service_unavailable_response(err: ServiceUnavailable | None = None) -> JsonResponse:
    err = err or ServiceUnavailable()
    response = JsonResponse(error_body(err.code, err.message, err.details), status=503)
    response["Retry-After"] = str(retry_after())
    return response


class ServiceUnavailableMiddleware(MiddlewareMixin):
    """Any view whose database wait timed out answers the contract's JSON 503, never a 500."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not pool_exhausted(exception):
            return None
        logger.warning("%s %s: no database connection came free in time", request.method, request.path)
        return service_unavailable_response()


async def run_db(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a short sync database function off the event loop.

    On PostgreSQL the thread's connection goes back to the process's pool as soon
    as `fn` returns: channels' wrapper would close it too, but its test communicator switches that
    off, and a thread that ended holding a pooled connection would keep its slot for good. Waiting
    for a free connection is bounded by `CHATLIMA_DB_POOL_TIMEOUT`; past that this raises
    `ServiceUnavailable` (a ClientError, 503) before `fn` has changed anything.
    """

    def call() -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            if getattr(connection, "pool", None) is not None and not connection.in_atomic_block:
                connection.close()

    sensitive = settings.CHATLIMA_DB_THREAD_SENSITIVE
    try:
        return await database_sync_to_async(call, thread_sensitive=sensitive)()
    except DatabaseError as exc:
        if pool_exhausted(exc):
            raise ServiceUnavailable() from exc
        raise


def close_pools() -> None:
    """At process exit (registered by chatlima/asgi.py): close each database's connection pool, so its
    worker threads have stopped before the interpreter finalizes. A pool thread still inside libpq
    while Python tears down can crash a stopping server (seen: daphne exiting with SIGSEGV after a
    SIGTERM mid-stream, tests/exchange/test_websocket_server_stop.py)."""
    from django.db import connections

    for alias in connections:
        close = getattr(connections[alias], "close_pool", None)
        if close is not None:
            try:
                close()
            except Exception:  # exiting anyway: nothing is left to report to
                logger.debug("closing the %s pool at exit failed", alias, exc_info=True)
