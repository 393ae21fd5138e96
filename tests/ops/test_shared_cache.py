"""The shared cache's backends (chatlima/cache.py) and the tables `migrate` brings.

* the database cache's incr keeps the key's expiry, and parallel increments lose nothing;
* the Redis cache's clear() leaves the rest of the Redis database alone (the channel layer's and
  Celery's keys, other deployments' and test runs' counts);
* every `migrate` makes the cache table, whatever cache the settings name, and gives every existing
  user a canonical username (refusing accounts that differ only by case or whitespace).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from chatlima.cache import DatabaseCache, RedisCache
from tests.e2e.conftest import ROOT, _server_env


def _expires(key: str):
    with connection.cursor() as cursor:
        cursor.execute("SELECT expires FROM chatlima_cache WHERE cache_key = %s", [key])
        return cursor.fetchone()[0]


def test_database_incr_counts_and_keeps_the_expiry(db):
    cache = DatabaseCache("chatlima_cache", {"KEY_PREFIX": f"t-{uuid.uuid4().hex[:8]}"})
    assert cache.add("count", 0, 100)
    before = _expires(cache.make_key("count"))
    assert [cache.incr("count") for _ in range(3)] == [1, 2, 3]
    assert cache.decr("count") == 2 and cache.get("count") == 2
    assert _expires(cache.make_key("count")) == before
    with pytest.raises(ValueError):
        cache.incr("missing")


def test_database_incr_of_an_expired_key_is_a_missing_key(db):
    cache = DatabaseCache("chatlima_cache", {"KEY_PREFIX": f"t-{uuid.uuid4().hex[:8]}"})
    cache.set("old", 5, 100)
    past = timezone.now() - timedelta(seconds=5)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE chatlima_cache SET expires = %s WHERE cache_key = %s",
                       [connection.ops.adapt_datetimefield_value(past), cache.make_key("old")])
    with pytest.raises(ValueError):
        cache.incr("old")


@pytest.mark.django_db(transaction=True)
def test_parallel_database_increments_lose_nothing():
    if connection.vendor != "postgresql":
        pytest.skip("real parallel writers need PostgreSQL (SQLite takes one writer at a time)")
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    DatabaseCache("chatlima_cache", {"KEY_PREFIX": prefix}).add("count", 0, 100)
    start = threading.Barrier(8)

    def bump() -> None:
        cache = DatabaseCache("chatlima_cache", {"KEY_PREFIX": prefix})
        start.wait()
        try:
            for _ in range(25):
                cache.incr("count")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert DatabaseCache("chatlima_cache", {"KEY_PREFIX": prefix}).get("count") == 200


def test_redis_clear_removes_its_own_keys_only():
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("needs REDIS_URL (a real Redis)")
    import redis

    ours = RedisCache(url, {"KEY_PREFIX": f"t-{uuid.uuid4().hex[:8]}"})
    theirs = RedisCache(url, {"KEY_PREFIX": f"t-{uuid.uuid4().hex[:8]}"})
    raw = redis.Redis.from_url(url)
    other_key = f"celery-like-{uuid.uuid4().hex[:8]}"
    raw.set(other_key, "queued", ex=60)
    try:
        ours.set_many({f"k{n}": n for n in range(2500)}, 60)
        theirs.set("k1", "kept", 60)
        assert ours.clear()
        assert ours.get_many([f"k{n}" for n in range(2500)]) == {}
        assert theirs.get("k1") == "kept"
        assert raw.get(other_key) == b"queued"
    finally:
        theirs.clear()
        raw.delete(other_key)


def test_redis_cache_objects_of_one_process_share_one_connection_pool():
    """Django keeps a cache object per asyncio context: without the shared pool each exchange's settle
    opened a Redis connection of its own (200 tasks, 200 connections)."""
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("needs REDIS_URL (a real Redis)")
    import asyncio

    import redis
    from asgiref.sync import sync_to_async

    raw = redis.Redis.from_url(url)
    from django.conf import settings

    # What settings.CACHES gives every Redis cache.
    assert settings.CACHES["default"]["OPTIONS"]["pool_class"] == "chatlima.cache.SharedConnectionPool"
    options = {"KEY_PREFIX": f"t-{uuid.uuid4().hex[:8]}", "OPTIONS": settings.CACHES["default"]["OPTIONS"]}

    def one(n: int) -> None:  # a fresh cache object, as each context gets
        RedisCache(url, options).add(f"k{n}", n, 30)

    async def many() -> None:
        await asyncio.gather(*(sync_to_async(one, thread_sensitive=False)(n) for n in range(100)))

    opened = raw.info("stats")["total_connections_received"]
    asyncio.run(many())
    opened = raw.info("stats")["total_connections_received"] - opened
    assert RedisCache(url, options).get("k99") == 99
    # At most one per thread of the executor that ran them (the default: min(32, cpus + 4)), never one per call.
    assert opened <= 40, opened
    RedisCache(url, options).clear()


def _migrate(database: str, *args: str, redis_url: str = "") -> subprocess.CompletedProcess:
    env = _server_env(f"sqlite:///{database}")
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    return subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("redis_url", ["", "redis://127.0.0.1:6379/15"], ids=["database-cache", "redis-cache"])
def test_every_migrate_makes_the_cache_table(tmp_path, redis_url):
    database = tmp_path / "fresh.sqlite3"
    result = _migrate(str(database), redis_url=redis_url)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(database) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "chatlima_cache" in tables


def test_migrating_existing_users_gives_each_its_canonical_name_and_refuses_clashes(tmp_path):
    database = str(tmp_path / "old.sqlite3")
    assert _migrate(database, "accounts", "0001").returncode == 0

    def add_user(username: str) -> None:
        with sqlite3.connect(database) as conn:
            conn.execute(
                "INSERT INTO accounts_user (password, is_superuser, username, first_name, last_name, email, "
                "is_staff, is_active, date_joined, timezone) VALUES ('!', 0, ?, '', '', '', 0, 1, '2025-01-01', 'UTC')",
                [username],
            )

    add_user("Alice")
    add_user("bob")
    add_user("Bob ")
    clash = _migrate(database)
    assert clash.returncode != 0 and "differ only by case or whitespace" in clash.stderr
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE accounts_user SET username = 'robert' WHERE username = 'Bob '")
    assert _migrate(database).returncode == 0
    with sqlite3.connect(database) as conn:
        keys = dict(conn.execute("SELECT username, username_key FROM accounts_user"))
    assert keys == {"Alice": "alice", "bob": "bob", "robert": "robert"}


def test_redis_cache_calls_share_one_client_per_pool():
    """Django built a `redis.Redis` for every cache call (60 us each); ours is made once per pool."""
    from django.conf import settings

    url = "redis://127.0.0.1:6379/15"  # never connected to: making a client opens no connection
    # What settings.CACHES gives a Redis cache, whether or not REDIS_URL made the settings' one Redis.
    options = {"KEY_PREFIX": "t-clients", "OPTIONS": settings.REDIS_CACHE_OPTIONS}
    first, second = RedisCache(url, options), RedisCache(url, options)
    client = first._cache.get_client(write=True)
    assert client is first._cache.get_client() is second._cache.get_client(write=True)
    assert client.connection_pool is second._cache._get_connection_pool(True)
    other_db = RedisCache("redis://127.0.0.1:6379/14", options)._cache.get_client()
    assert other_db is not client and other_db.connection_pool is not client.connection_pool
