"""Fixtures for replaying real provider recordings through the exchange doors."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings


@pytest.fixture(autouse=True)
def _fast_exchanges(settings):
    # As tests/exchange/conftest.py: every delta goes out at once, no timed partial saves.
    settings.CHATLIMA_OFFLINE_CHUNK_DELAY_MS = 0
    settings.CHATLIMA_STREAM_BATCH_MS = 0
    settings.CHATLIMA_PARTIAL_SAVE_SECONDS = 0
    # The README's call counts assume the default retry budget: 3 retries (4 calls) for a 429.
    settings.PROVIDER_MAX_RETRIES = 3
    if django_settings.CHANNEL_LAYERS["default"]["BACKEND"].startswith("channels_redis"):
        # Our own prefix, so parallel suites on the same Redis never read each other's frames.
        layers = {"default": {**django_settings.CHANNEL_LAYERS["default"]}}
        layers["default"]["CONFIG"] = {**layers["default"]["CONFIG"], "prefix": "chatlima-recordings-tests"}
        settings.CHANNEL_LAYERS = layers
