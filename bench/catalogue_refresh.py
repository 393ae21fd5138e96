"""refresh_models against a catalogue of 1,000 models: time and queries, then the catalogue read back.

    .venv/bin/python bench/catalogue_refresh.py [--models 1000] [--runs 5] [--database URL]

A local fake OpenRouter (tests/fakes, the real `GET /api/v1/models` format, every model priced) is
asked through the real openai SDK. Uses its own database: BENCH_DATABASE_URL or --database
(default postgres://root@127.0.0.1:5432/chatlima_bench_catalogue; `sqlite` for a temporary SQLite
file), created, migrated and emptied of catalogue rows first. Measures, each the median of --runs:

- a first refresh (every model new, with its price), on an empty catalogue;
- a re-run with nothing changed;
- a refresh where 10% of prices changed, 5% of models vanished and 5% are new;
- reading the catalogue back: GET /api/v1/models and the chat page, with every model priced.

Prints wall time, the part spent fetching the list (HTTP + SDK) and the number of SQL queries.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_URL = "postgres://root@127.0.0.1:5432/chatlima_bench_catalogue"


def ensure_database(url: str) -> None:
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    with psycopg.connect(parsed._replace(path="/postgres").geturl(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def setup(url: str, fake_base_url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.pop("REDIS_URL", None)
    for name in ("OPENAI_API_KEY", "GEMINI_API_KEY", "CHATLIMA_OPENAI_ENDPOINTS"):
        os.environ.pop(name, None)
    os.environ["OPENROUTER_API_KEY"] = "sk-bench"
    os.environ["OPENROUTER_BASE_URL"] = fake_base_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatlima.settings")
    os.environ.setdefault("DJANGO_LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def catalogue(count: int, salt: int = 0) -> list[dict]:
    from tests.fakes.openai_server import openrouter_model

    models = []
    for n in range(count):
        prompt = f"0.000000{(n % 90) + 10}"
        completion = f"0.00000{(n % 90) + 10}" if not salt or n % 10 != 1 else f"0.00000{(n % 80) + 11}"
        models.append(openrouter_model(f"vendor{n % 40}/model-{n}-{salt if n % 20 == 0 else 0}",
                                       f"Vendor {n % 40}: Model {n}", prompt=prompt, completion=completion,
                                       input_cache_read="0.00000001", context_length=8192 * (1 + n % 16)))
    return models


def measure(fn) -> tuple[float, float, int]:
    """(seconds, seconds fetching the list, queries) of one call."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from chat.providers.openrouter import OpenRouterProvider

    fetching = [0.0]
    original = OpenRouterProvider.list_models

    def timed(self):
        started = time.perf_counter()
        try:
            return original(self)
        finally:
            fetching[0] += time.perf_counter() - started

    OpenRouterProvider.list_models = timed
    try:
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            fn()
            seconds = time.perf_counter() - started
    finally:
        OpenRouterProvider.list_models = original
    return seconds, fetching[0], len(queries.captured_queries)


def reset() -> None:
    from usage.models import CatalogueEntry, ProviderPrice
    from usage.pricing import forget_prices

    ProviderPrice.objects.all().delete()
    CatalogueEntry.objects.filter(provider="openrouter").delete()
    forget_prices()


def report(label: str, samples: list[tuple[float, float, int]]) -> None:
    seconds = statistics.median(s[0] for s in samples)
    fetching = statistics.median(s[1] for s in samples)
    queries = sorted({s[2] for s in samples})
    print(f"{label:<44} {seconds * 1000:8.1f} ms  (fetching {fetching * 1000:6.1f} ms, "
          f"database and Python {1000 * (seconds - fetching):7.1f} ms)  queries {'/'.join(map(str, queries))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    args = parser.parse_args()

    from tests.fakes.openai_server import FakeOpenAI

    url = args.database
    if url == "sqlite":
        url = f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3"
    elif url.startswith("postgres"):
        ensure_database(url)
    with FakeOpenAI(base_path="/api/v1") as fake:
        setup(url, fake.base_url)
        from django.contrib.auth import get_user_model
        from django.test import Client

        from chat.catalogue import refresh_models
        from usage.models import CatalogueEntry

        first, rerun, changed, api, page = [], [], [], [], []
        for _ in range(args.runs):
            reset()
            fake.models = catalogue(args.models)
            first.append(measure(lambda: refresh_models(["openrouter"])))
            rerun.append(measure(lambda: refresh_models(["openrouter"])))
            fake.models = catalogue(args.models, salt=1)
            changed.append(measure(lambda: refresh_models(["openrouter"])))
        listed = CatalogueEntry.objects.filter(provider="openrouter", listed=True).count()
        assert listed == args.models, listed

        user, _ = get_user_model().objects.get_or_create(username="bench-catalogue")
        client = Client()
        client.force_login(user)
        for _ in range(args.runs):
            api.append(measure(lambda: client.get("/api/v1/models")))
            page.append(measure(lambda: client.get("/")))
        body = client.get("/api/v1/models").json()

    engine = "PostgreSQL" if url.startswith("postgres") else "SQLite"
    print(f"refresh_models, {args.models} OpenRouter models, {engine}, median of {args.runs}:")
    report("first refresh (all new, all priced)", first)
    report("re-run, nothing changed", rerun)
    report("10% prices changed, 5% gone, 5% new", changed)
    priced = sum(1 for m in body["models"] if m["pricing"] is not None)
    print(f"reading the catalogue back ({len(body['models'])} models listed, {priced} of them priced):")
    report("GET /api/v1/models", api)
    report("chat page (selector and page data)", page)


if __name__ == "__main__":
    main()
