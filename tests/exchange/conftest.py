"""Fixtures for the exchange doors: fast offline streams, tokens for WebSocket clients."""

from __future__ import annotations

from importlib import import_module

import pytest
from django.conf import settings as django_settings


@pytest.fixture(autouse=True)
def _fast_exchanges(settings):
    settings.CHATLIMA_OFFLINE_CHUNK_DELAY_MS = 0
    settings.CHATLIMA_STREAM_BATCH_MS = 0
    settings.CHATLIMA_PARTIAL_SAVE_SECONDS = 0
    if django_settings.CHANNEL_LAYERS["default"]["BACKEND"].startswith("channels_redis"):
        # Our own prefix, so parallel suites on the same Redis never read each other's frames.
        layers = {"default": {**django_settings.CHANNEL_LAYERS["default"]}}
        layers["default"]["CONFIG"] = {**layers["default"]["CONFIG"], "prefix": "chatlima-h4-tests"}
        settings.CHANNEL_LAYERS = layers


@pytest.fixture(autouse=True)
def _price_table(request):
    """The model catalogue seeded by migration; transactional tests flush it, so put it back."""
    marker = request.node.get_closest_marker("django_db")
    if marker is None and "db" not in request.fixturenames and "transactional_db" not in request.fixturenames:
        return
    request.getfixturevalue("transactional_db" if marker and marker.kwargs.get("transaction") else "db")
    from django.apps import apps

    from usage.models import ModelPrice

    if not ModelPrice.objects.filter(model_id="offline-demo").exists():
        import_module("usage.migrations.0002_seed_model_prices").seed(apps, None)


@pytest.fixture
def paced(settings):
    """An offline model slow enough to cancel mid-stream."""
    settings.CHATLIMA_OFFLINE_CHUNK_DELAY_MS = 15
    return settings


@pytest.fixture(scope="session", autouse=True)
def _drop_worker_connections(django_db_setup, django_db_blocker):
    """The pipeline's worker threads keep their own connections; end them so the test database can be dropped."""
    yield
    with django_db_blocker.unblock():
        from django.db import connection

        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


from tests.fakes.fixtures import fake_gemini, fake_openai  # noqa: E402, F401 - the fake providers' fixtures
