"""The shared cast: an owner, a stranger who must get 404s, and their API clients."""

from __future__ import annotations

import hashlib
import os
import socket
from urllib.parse import urlparse

import pytest
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.models import User
from usage.models import Budget


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=3):
            return True
    except OSError:
        return False


def pytest_configure(config: pytest.Config) -> None:
    """In CI the suite must run on the real PostgreSQL and Redis, never silently without them."""
    if os.environ.get("CI", "").lower() not in ("1", "true"):
        return
    database_url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    problems = []
    if not database_url.startswith(("postgres://", "postgresql://")):
        problems.append("DATABASE_URL must point at PostgreSQL in CI")
    elif not _reachable(database_url, 5432):
        problems.append(f"PostgreSQL at {database_url} is unreachable")
    if not redis_url:
        problems.append("REDIS_URL must be set in CI")
    elif not _reachable(redis_url, 6379):
        problems.append(f"Redis at {redis_url} is unreachable")
    if problems:
        raise pytest.UsageError("CI needs its services: " + "; ".join(problems))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Schemathesis names each API operation's test `test_x[GET /path]` but gives them all the node id
    `file::test_x`; pytest-xdist tells tests apart by node id and runs only one of a repeated id.
    Each such test gets its own name as its node id (`file::test_x[GET /path]`); pytest has no public
    way to set one, so this sets its structured id (`Node._id`, a `NodeId`, as pytest 9 keeps it)."""
    for item in items:
        base, _, last = item.nodeid.rpartition("::")
        if base and item.name.startswith(last + "["):
            item._id = type(item._id).parse(f"{base}::{item.name}")


def make_user(username: str, password: str = "correct-horse-battery") -> User:
    user = User.objects.create_user(username=username, password=password)
    Budget.objects.for_user(user)
    return user


@pytest.fixture
def owner(db) -> User:
    return make_user("owner")


@pytest.fixture
def stranger(db) -> User:
    return make_user("stranger")


def bearer_client(user: User) -> APIClient:
    _, token = AuthToken.objects.create(user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def owner_api(owner) -> APIClient:
    return bearer_client(owner)


@pytest.fixture
def stranger_api(stranger) -> APIClient:
    return bearer_client(stranger)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_cache():
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _seeded_prices(request):
    """Transactional tests flush the database, data migrations included: put the seeded catalogue back."""
    if not request.node.get_closest_marker("django_db") and not {"db", "transactional_db"} & set(request.fixturenames):
        return
    request.getfixturevalue("_django_db_helper")
    from usage.models import CatalogueEntry
    from usage.pricing import forget_prices

    forget_prices()  # a flushed table leaves this process remembering prices of rows now gone

    if not CatalogueEntry.objects.exists():
        import importlib

        from django.apps import apps as django_apps

        importlib.import_module("usage.migrations.0008_seeded_prices_become_the_catalogue").seed_catalogue(
            django_apps, None)


@pytest.fixture(autouse=True)
def _tasks_run_inline(request):
    """Tests see a task's effect at once; only a test that starts a real worker sends to the broker."""
    from chatlima.celery import app

    if request.node.get_closest_marker("celery_worker"):
        yield
        return
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


@pytest.fixture(scope="session", autouse=True)
def _cache_keys_of_the_test_database(django_db_setup):
    """The shared cache's keys are prefixed per database (settings.CACHE_KEY_PREFIX), but the settings
    name it before pytest-django makes the test database: prefix them by the test database's name,
    so that runs sharing one Redis (xdist's workers, each on a database of its own, and a `make run`
    beside them) never clear or count each other's keys."""
    from django.conf import settings
    from django.db import connection
    from django.test import override_settings

    name = str(connection.settings_dict["NAME"])
    prefix = f"{settings.CACHE_KEY_PREFIX}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    caches = {alias: {**conf, "KEY_PREFIX": prefix} for alias, conf in settings.CACHES.items()}
    with override_settings(CACHES=caches):
        yield


@pytest.fixture(scope="session", autouse=True)
def _drop_pipeline_connections(django_db_setup, django_db_blocker):
    """The pipeline's worker threads keep their own connections; end them so PostgreSQL can drop the test DB."""
    yield
    with django_db_blocker.unblock():
        from django.db import connection

        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


@pytest.fixture(autouse=True)
def _fetcher_reaches_only_loopback(settings):
    """No test's URL fetch can leave this machine: the attachment fetcher's resolver knows only
    loopback names and addresses (tests/attachments/resolver.py); every other name is unresolved."""
    settings.CHATLIMA_FETCH_RESOLVER = "tests.attachments.resolver.loopback_only"
