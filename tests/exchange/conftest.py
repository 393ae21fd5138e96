"""Fixtures for the exchange doors: fast offline streams, tokens for WebSocket clients."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings

from tests.fakes.fixtures import fake_gemini, fake_openai, fake_openrouter  # noqa: F401 - the fake providers' fixtures


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
