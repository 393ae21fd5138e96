"""PostgreSQL connections come from one bounded pool per process (settings, chatlima/db.py): a burst
queues for a connection instead of opening one each, every connection goes back after each call, and
a pool exhausted past its timeout answers the contract's 503 SERVICE_UNAVAILABLE, never a 500.

The pool is PostgreSQL's (SQLite has none): these tests skip on SQLite, except the settings ones.
Here the test process's own pool is swapped for a tiny one with a short timeout; the real-server
tests are in test_db_pool_servers.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connection, connections
from django.test import AsyncClient
from knox.models import AuthToken

from chat.exchange import start_exchange
from chat.models import Message
from chatlima.asgi import application
from chatlima.db import ServiceUnavailable, run_db
from chatlima.errors import error_response
from tests.conftest import make_user
from usage.models import ApiUsageLog


def _settings_with(env: dict[str, str], code: str = "") -> dict:
    """chatlima.settings as a fresh process with `env` reads it (nothing is connected)."""
    script = (
        "import json, django\n"
        "django.setup()\n"
        "from django.conf import settings\n"
        f"{code}\n"
        "db = settings.DATABASES['default']\n"
        "print(json.dumps({'pool': db.get('OPTIONS', {}).get('pool'), 'age': db['CONN_MAX_AGE'],"
        " 'checks': db.get('CONN_HEALTH_CHECKS', False), 'middleware': settings.MIDDLEWARE}))\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CHATLIMA_DB_", "DATABASE_"))}
    out = subprocess.run([sys.executable, "-c", script], env={**clean, "DJANGO_SETTINGS_MODULE": "chatlima.settings", **env},
                         cwd=settings.BASE_DIR, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


PG = "postgres://someone@127.0.0.1:5432/somewhere"


def test_postgres_gets_a_bounded_pool_sized_by_the_setting():
    default = _settings_with({"DATABASE_URL": PG})
    assert default["pool"]["max_size"] == 10 and default["pool"]["timeout"] == 10
    assert default["pool"]["min_size"] <= default["pool"]["max_size"]
    assert default["age"] == 0 and default["checks"] is True
    sized = _settings_with({"DATABASE_URL": PG, "CHATLIMA_DB_POOL_SIZE": "3", "CHATLIMA_DB_POOL_TIMEOUT": "2.5",
                            "DATABASE_CONN_MAX_AGE": "600"})
    assert (sized["pool"]["max_size"], sized["pool"]["timeout"], sized["age"]) == (3, 2.5, 0)
    assert "chatlima.db.ServiceUnavailableMiddleware" in default["middleware"]


def test_no_pool_on_sqlite_or_when_switched_off():
    assert _settings_with({"DATABASE_URL": "sqlite:////tmp/pool-test.sqlite3"})["pool"] is None
    off = _settings_with({"DATABASE_URL": PG, "CHATLIMA_DB_POOL_SIZE": "0", "DATABASE_CONN_MAX_AGE": "60"})
    assert off["pool"] is None and off["age"] == 60


def test_a_celery_worker_takes_one_connection_per_task_it_runs_at_once():
    size = "from chatlima.celery import size_the_database_pool as size\nsize(options={})"
    prefork = _settings_with({"DATABASE_URL": PG}, size.replace("{}", "{'pool': 'prefork', 'concurrency': 4}"))
    threads = _settings_with({"DATABASE_URL": PG}, size.replace("{}", "{'pool': 'threads', 'concurrency': 4}"))
    big = _settings_with({"DATABASE_URL": PG, "CHATLIMA_DB_POOL_SIZE": "3"},
                         size.replace("{}", "{'pool': 'threads', 'concurrency': 8}"))
    assert (prefork["pool"]["min_size"], prefork["pool"]["max_size"]) == (1, 1)
    assert threads["pool"]["max_size"] == 4
    assert big["pool"]["max_size"] == 3  # never more than a server process's share


# --- the test process's own pool, made tiny -----------------------------------------------------


@pytest.fixture
def tiny_pool(transactional_db):
    """This process's pool swapped for one of `max_size` connections with a short timeout."""
    options = settings.DATABASES["default"].get("OPTIONS", {})
    if connection.vendor != "postgresql":
        pytest.skip("the connection pool is PostgreSQL's")
    if getattr(settings, "CHATLIMA_DB_POOL_SIZE", None) == 0:
        pytest.skip("the pool is switched off (CHATLIMA_DB_POOL_SIZE=0)")
    assert "pool" in options, "on PostgreSQL connections come from a pool"
    saved = dict(options["pool"])

    def make(max_size: int, timeout: float):
        connection.close()
        connection.close_pool()
        options["pool"].update(min_size=1, max_size=max_size, timeout=timeout)
        return connection.pool

    yield make
    connection.close()
    connection.close_pool()
    options["pool"].clear()
    options["pool"].update(saved)


class Holder(threading.Thread):
    """Takes one pooled connection and keeps it until released."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.holding = threading.Event()
        self.release = threading.Event()

    def run(self) -> None:
        from django.db import connection as own

        own.ensure_connection()
        self.holding.set()
        self.release.wait(30)
        own.close()


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid() FROM pg_sleep(0.02)")
        return cursor.fetchone()[0]


def test_a_burst_of_database_calls_queues_for_the_pool_and_every_connection_goes_back(tiny_pool):
    pool = tiny_pool(max_size=2, timeout=10)

    async def burst() -> list[int]:
        return await asyncio.gather(*(run_db(_backend_pid) for _ in range(40)))

    pids = asyncio.run(burst())
    stats = pool.get_stats()
    assert len(pids) == 40
    assert len(set(pids)) <= 2, "every call took one of the pool's two connections"
    assert stats.get("requests_queued", 0) > 0, "more calls than connections: some waited"
    assert stats.get("requests_errors", 0) == 0
    assert stats["pool_available"] == stats["pool_size"] <= 2, "every connection went back to the pool"


def test_run_db_hands_its_connection_back_even_where_channels_does_not_close_it(tiny_pool):
    """channels' test communicator switches its closing of connections off (channels.testing); a
    thread that ends holding a pooled connection would keep its slot for good."""
    pool = tiny_pool(max_size=2, timeout=2)
    with mock.patch("channels.db.close_old_connections", lambda: None):
        for _ in range(5):
            # Each asyncio.run has its own executor, whose thread ends with the loop.
            assert asyncio.run(run_db(_backend_pid)) > 0
    stats = pool.get_stats()
    assert stats["pool_available"] == stats["pool_size"] <= 2


def test_an_exhausted_pool_answers_service_unavailable_and_changes_nothing(tiny_pool):
    user = make_user("pooled")
    _, token = AuthToken.objects.create(user)
    tiny_pool(max_size=1, timeout=0.3)
    # The thread that runs sync code for async callers may still hold a connection of the pool that
    # was swapped out (channels' test communicator keeps them open): give it back first.
    asyncio.run(sync_to_async(connections.close_all)())
    holder = Holder()
    holder.start()
    assert holder.holding.wait(10)

    async def while_exhausted() -> dict:
        found: dict = {}
        began = time.monotonic()
        with pytest.raises(ServiceUnavailable) as raised:
            await run_db(_backend_pid)
        found["waited"] = time.monotonic() - began
        found["run_db"] = raised.value
        with pytest.raises(ServiceUnavailable) as raised:
            await start_exchange(user, {"message": "Is anyone there?", "client_message_id": "msg_pooltest01"})
        found["pipeline"] = error_response(raised.value)
        client, auth = AsyncClient(), {"authorization": f"Bearer {token}"}
        found["sse"] = await client.post("/api/v1/chat/stream", {"message": "Hello?"}, content_type="application/json",
                                         headers=auth)
        found["rest"] = await client.get("/api/v1/conversations", headers=auth)
        ws = WebsocketCommunicator(application, f"/ws/chat/?token={token}")
        connected, _ = await ws.connect(timeout=10)
        found["ws_connected"] = connected
        found["ws_frame"] = await ws.receive_json_from(timeout=10)
        found["ws_close"] = await ws.receive_output(timeout=10)
        await ws.wait()
        return found

    try:
        found = asyncio.run(while_exhausted())
    finally:
        holder.release.set()
        holder.join(10)
    assert 0.3 <= found["waited"] < 5, "the wait is bounded by the pool's timeout"
    err = found["run_db"]
    assert (err.code, err.http_status, err.details["reason"]) == ("SERVICE_UNAVAILABLE", 503, "database_busy")
    for name in ("pipeline", "sse", "rest"):
        response = found[name]
        assert response.status_code == 503, (name, response.content[:300])
        body = json.loads(response.content)
        assert set(body["error"]) == {"code", "message", "details"}
        assert body["error"]["code"] == "SERVICE_UNAVAILABLE", name
    assert found["sse"]["Retry-After"] == found["rest"]["Retry-After"] == "1"
    # The socket's handshake read found no connection: it is told so and closed with 1013 (Try Again Later).
    assert found["ws_connected"] is True
    assert (found["ws_frame"]["type"], found["ws_frame"]["code"]) == ("error", "SERVICE_UNAVAILABLE")
    assert found["ws_close"] == {"type": "websocket.close", "code": 1013}
    # The pool has its connection back: the same calls work, and nothing was stored meanwhile.
    assert asyncio.run(run_db(_backend_pid)) > 0
    assert not ApiUsageLog.objects.exists() and not Message.objects.exists()


def test_a_settle_that_finds_no_connection_says_so_and_leaves_the_exchange_to_the_periodic_settle(tiny_pool):
    """The answer streamed, then every connection was taken: the settle waits the pool's timeout a
    few times, then the stream ends in SERVICE_UNAVAILABLE (never a 500 or a silent end); the
    exchange stays pending with its hold until the periodic settle, which charges what was saved."""
    from chat.exchange import SETTLE_ATTEMPTS, settle_interrupted_exchanges

    user = make_user("settles-late")
    tiny_pool(max_size=1, timeout=0.3)
    asyncio.run(sync_to_async(connections.close_all)())
    holder = Holder()

    async def stream() -> tuple[list[dict], float]:
        exchange = await start_exchange(user, {"message": "Say something long.", "client_message_id": "msg_latesettle1"})
        events, began = [], None
        async for event in exchange.events():
            events.append(event)
            if event["type"] == "stream_chunk" and not holder.is_alive():
                # The answer is arriving: once its first partial is saved, every connection is taken
                # until the test lets go.
                for _ in range(50):
                    if await run_db(lambda: Message.objects.filter(role="assistant").exclude(content="").exists()):
                        break
                    await asyncio.sleep(0.1)
                await asyncio.to_thread(holder.start)
                await asyncio.to_thread(holder.holding.wait, 10)
                began = time.monotonic()
        return events, time.monotonic() - began

    try:
        events, waited = asyncio.run(stream())
    finally:
        holder.release.set()
        holder.join(10)
    kinds = [event["type"] for event in events]
    assert "stream_chunk" in kinds and "message_complete" not in kinds
    assert (events[-1]["type"], events[-1]["code"]) == ("error", "SERVICE_UNAVAILABLE")
    assert waited >= 0.3 * SETTLE_ATTEMPTS, "each attempt waited the pool's timeout"
    assistant = Message.objects.get(role="assistant")
    row = ApiUsageLog.objects.get()
    assert assistant.status == "streaming" and row.status == ApiUsageLog.Status.PENDING
    # Its heartbeat stopped with the stream: the periodic settle charges it once, from what was saved.
    later = assistant.heartbeat_at + __import__("datetime").timedelta(seconds=settings.CHATLIMA_HEARTBEAT_STALE_SECONDS + 1)
    assert settle_interrupted_exchanges(now=later) == 1
    row.refresh_from_db()
    assistant.refresh_from_db()
    assert ApiUsageLog.objects.count() == 1 and row.status != ApiUsageLog.Status.PENDING
    assert assistant.status != "streaming" and assistant.content, "the saved partial answer is kept"
