from __future__ import annotations

from importlib import import_module

import pytest

from tests.fakes.fixtures import fake_gemini, fake_openai, fake_openrouter  # noqa: F401


@pytest.fixture
def seeded_prices(transactional_db) -> None:
    """Transactional tests flush the price table the migration seeded; put it back."""
    from django.apps import apps

    from usage.models import ModelPrice

    if not ModelPrice.objects.filter(model_id="offline-demo").exists():
        import_module("usage.migrations.0002_seed_model_prices").seed(apps, None)


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
