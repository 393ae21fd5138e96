"""Settings come from the environment through small typed helpers that refuse a malformed value:
a typo must stop the start with the variable's name, never flip a switch or fall back silently."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings


def _start(env: dict[str, str], names: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """A fresh process reading chatlima.settings with `env`; prints the named settings as JSON."""
    script = (
        "import json, django\n"
        "django.setup()\n"
        "from django.conf import settings\n"
        f"print(json.dumps({{n: str(getattr(settings, n)) for n in {list(names)!r}}}))\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CHATLIMA_", "DJANGO_DEBUG"))}
    return subprocess.run([sys.executable, "-c", script], env={**clean, "DJANGO_SETTINGS_MODULE": "chatlima.settings", **env},
                          cwd=settings.BASE_DIR, capture_output=True, text=True)


@pytest.mark.parametrize(("name", "value"), [
    ("CHATLIMA_STREAM_BATCH_MS", "fifty"),
    ("CHATLIMA_PROVIDER_TIMEOUT_SECONDS", "1m"),
    ("CHATLIMA_SERVE_STATIC", "maybe"),
    ("CHATLIMA_DEFAULT_MONTHLY_COST_LIMIT", "ten dollars"),
    ("CHATLIMA_DEFAULT_MONTHLY_TOKEN_LIMIT", "1e6"),
])
def test_it_refuses_to_start_on_a_malformed_value(name, value):
    started = _start({name: value})
    assert started.returncode != 0
    assert "ImproperlyConfigured" in started.stderr and f"{name}={value!r}" in started.stderr


def test_it_reads_typed_values_and_empty_means_default_or_unlimited():
    started = _start(
        {"CHATLIMA_STREAM_BATCH_MS": "75", "CHATLIMA_SERVE_STATIC": "off", "CHATLIMA_PROVIDER_TIMEOUT_SECONDS": "2.5",
         "CHATLIMA_DEFAULT_MONTHLY_TOKEN_LIMIT": "", "CHATLIMA_DEFAULT_MONTHLY_COST_LIMIT": "1.50",
         "CHATLIMA_DEFAULT_MODEL": ""},
        ("CHATLIMA_STREAM_BATCH_MS", "CHATLIMA_SERVE_STATIC", "PROVIDER_TIMEOUT_SECONDS",
         "CHATLIMA_DEFAULT_MONTHLY_TOKEN_LIMIT", "CHATLIMA_DEFAULT_MONTHLY_COST_LIMIT", "CHATLIMA_DEFAULT_MODEL"),
    )
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout.strip().splitlines()[-1]) == {
        "CHATLIMA_STREAM_BATCH_MS": "75", "CHATLIMA_SERVE_STATIC": "False", "PROVIDER_TIMEOUT_SECONDS": "2.5",
        "CHATLIMA_DEFAULT_MONTHLY_TOKEN_LIMIT": "None", "CHATLIMA_DEFAULT_MONTHLY_COST_LIMIT": "1.50",
        "CHATLIMA_DEFAULT_MODEL": "offline-demo",
    }
