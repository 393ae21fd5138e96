"""The 13 models 0002 seeded become catalogue entries, and their 2025-10-01 list prices stop being prices.

Those rows were a hand-kept catalogue; as `ModelPrice` rows they would now be administrator's
overrides, winning over every maintained source with prices fourteen months old. Rows that still
hold exactly the seeded figures are removed (the catalogue entry keeps the model, genai-prices or the
provider prices it); a seeded row an administrator edited stays, as the override it now is.
"""

import importlib
from decimal import Decimal as D

from django.db import migrations

SEED = importlib.import_module("usage.migrations.0002_seed_model_prices")


def seed_catalogue(apps, schema_editor):
    """Catalogue entries for the seeded models (also used by the tests after a flush)."""
    CatalogueEntry = apps.get_model("usage", "CatalogueEntry")
    for provider, model_id, name, ctx, *_ in SEED.PRICES:
        CatalogueEntry.objects.get_or_create(provider=provider, model_id=model_id,
                                             defaults={"display_name": name, "context_window": ctx, "listed": True})


def forward(apps, schema_editor):
    seed_catalogue(apps, schema_editor)
    ModelPrice = apps.get_model("usage", "ModelPrice")
    for provider, model_id, name, ctx, inp, out, cached, reasoning in SEED.PRICES:
        ModelPrice.objects.filter(
            provider=provider, model_id=model_id, effective_date=SEED.EFFECTIVE, display_name=name,
            input_per_mtok=D(inp), output_per_mtok=D(out),
            cached_input_per_mtok=None if cached is None else D(cached),
            reasoning_per_mtok=None if reasoning is None else D(reasoning),
        ).delete()


def backward(apps, schema_editor):
    SEED.seed(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [("usage", "0007_catalogue_and_provider_prices")]
    operations = [migrations.RunPython(forward, backward)]
