"""Test plumbing that must come before tests/conftest.py's fixtures: the shared cache without Redis.

Without REDIS_URL the shared cache is the database (settings.CACHES, chatlima/cache.py). Tests with
database access use it for real; their database is opened before tests/conftest.py's autouse
`_fresh_cache` clears the cache. A test without database access, and pytest's collection (which
imports modules that call views), cannot reach any database, so they get a cache of their own
process: nothing shared can be at stake where nothing reaches the database.
"""

from __future__ import annotations

from contextlib import nullcontext

import pytest

_DB_FIXTURES = {"db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback", "live_server"}
_PROCESS_CACHE = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "figures": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
}


def _cache_is_the_database() -> bool:
    from django.conf import settings

    return any(c["BACKEND"].endswith("DatabaseCache") for c in settings.CACHES.values())


def _without_database():
    from django.test import override_settings

    return override_settings(CACHES=_PROCESS_CACHE) if _cache_is_the_database() else nullcontext()


@pytest.hookimpl(wrapper=True)
def pytest_collection(session):
    with _without_database():
        return (yield)


@pytest.fixture(autouse=True)
def _shared_cache_reachable(request):
    if not _cache_is_the_database():
        yield
    elif request.node.get_closest_marker("django_db") or _DB_FIXTURES & set(request.fixturenames):
        request.getfixturevalue("_django_db_helper")
        yield
    else:
        with _without_database():
            yield
