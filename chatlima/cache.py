"""The shared cache's two backends: Django's own, each with the one fix ChatLima's counts need.

Whatever decides across requests (DRF throttles, login lockouts, the rollup debounce) lives in the
cache every server process and machine shares: Redis when `REDIS_URL` is set, else the database
(settings.CACHES). Both backends are Django's; these subclasses change one method each:

* `RedisCache.clear()` removes only this cache's keys (its KEY_PREFIX). Django's is FLUSHDB, which
  would also drop the channel layer's and the Celery broker's keys in the same Redis database, and
  every other deployment's or test run's counts there.
* `SharedConnectionPool` (Redis): one connection pool per process and URL. Django keeps a cache
  object, and with it a pool, per asyncio context, so every WebSocket connection and every exchange's
  settle opened a new Redis connection (200 cache calls in 200 tasks: 200 connections; with this: a
  handful), and redis-py reads its package metadata for each new one. The `redis.Redis` client on
  that pool is made once too (`SharedClientCacheClient`): Django builds a new one for every cache
  call, 60 us of CPU each here, and a client on a shared pool is as thread-safe as the pool.
* `DatabaseCache.incr()` is one read-modify-write under a row lock that keeps the key's expiry.
  Django's is a get and then a set: two processes can both read 3 and write 4 (a failed login left
  uncounted), and the set moves the expiry to the default timeout.
"""

from __future__ import annotations

import base64
import pickle
import re
import threading

import redis as redis_lib
from django.core.cache.backends import db, redis
from django.db import connections, models, router, transaction
from django.utils import timezone


class SharedConnectionPool(redis_lib.ConnectionPool):
    """`ConnectionPool.from_url` that hands every cache object of this process the same pool for the
    same URL and options (redis-py's pool is thread-safe and starts afresh in a forked child)."""

    _pools: dict[tuple, redis_lib.ConnectionPool] = {}
    _lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **options):
        key = (url, tuple(sorted((name, repr(value)) for name, value in options.items())))
        with cls._lock:
            pool = cls._pools.get(key)
            if pool is None:
                pool = cls._pools[key] = super().from_url(url, **options)
        return pool


class SharedClientCacheClient(redis.RedisCacheClient):
    """Django's Redis cache client, with one `redis.Redis` per connection pool instead of one per call."""

    _clients: dict[int, redis_lib.Redis] = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None or client.connection_pool is not pool:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


class RedisCache(redis.RedisCache):
    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = SharedClientCacheClient

    def clear(self) -> bool:
        """Delete this cache's keys only (SCAN by prefix), leaving the rest of the Redis database alone."""
        client = self._cache.get_client(None, write=True)
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self.key_prefix) + ":*"
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) == 1000:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
        return True


class DatabaseCache(db.DatabaseCache):
    def incr(self, key, delta: int = 1, version=None):
        """Add `delta` to a live key atomically, keeping its expiry; ValueError when it is missing or expired.

        Transaction: its own atomic block (a savepoint inside the caller's). Lock: the cache row, with
        SELECT ... FOR UPDATE where the database has it (PostgreSQL); SQLite's IMMEDIATE transactions
        (settings.DATABASES) take the write lock at BEGIN, which serialises the same way.
        """
        key = self.make_and_validate_key(key, version=version)
        alias = router.db_for_write(self.cache_model_class)
        connection = connections[alias]
        qn = connection.ops.quote_name
        table = qn(self._table)
        lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
        with transaction.atomic(using=alias), connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {qn('value')}, {qn('expires')} FROM {table} WHERE {qn('cache_key')} = %s{lock}", [key]
            )
            row = cursor.fetchone()
            if row is None or self._expired(connection, row[1]):
                raise ValueError(f"Key '{key}' not found.")
            value = pickle.loads(base64.b64decode(connection.ops.process_clob(row[0]).encode())) + delta
            encoded = base64.b64encode(pickle.dumps(value, self.pickle_protocol)).decode("latin1")
            cursor.execute(f"UPDATE {table} SET {qn('value')} = %s WHERE {qn('cache_key')} = %s", [encoded, key])
        return value

    @staticmethod
    def _expired(connection, expires) -> bool:
        # The same conversion Django's get_many() applies: the column comes back naive or aware by backend.
        expression = models.Expression(output_field=models.DateTimeField())
        for converter in connection.ops.get_db_converters(expression) + expression.get_db_converters(connection):
            expires = converter(expires, expression, connection)
        return expires < timezone.now()
