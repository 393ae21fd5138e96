"""Fixtures for the exchange doors: fast offline streams, tokens for WebSocket clients."""

from __future__ import annotations

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
