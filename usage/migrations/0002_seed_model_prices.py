"""Seed the price table with public list prices (USD per million tokens) as of 2025-10-01.

Prices change: add a row with a later effective date in the admin rather than editing these.
"""

from decimal import Decimal as D

from django.db import migrations

EFFECTIVE = "2025-10-01"

# provider, model id, display name, context window, input, output, cached input, reasoning
PRICES = [
    ("offline", "offline-demo", "Offline demo (free, no network)", 32768, "0", "0", "0", "0"),
    ("gemini", "gemini-2.5-flash", "Gemini 2.5 Flash", 1048576, "0.30", "2.50", "0.03", "2.50"),
    ("gemini", "gemini-2.5-pro", "Gemini 2.5 Pro", 1048576, "1.25", "10.00", "0.125", "10.00"),
    ("gemini", "gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite", 1048576, "0.10", "0.40", "0.01", "0.40"),
    ("openai", "gpt-4o", "GPT-4o", 128000, "2.50", "10.00", "1.25", None),
    ("openai", "gpt-4o-mini", "GPT-4o mini", 128000, "0.15", "0.60", "0.075", None),
    ("openai", "gpt-4.1", "GPT-4.1", 1047576, "2.00", "8.00", "0.50", None),
    ("openai", "gpt-4.1-mini", "GPT-4.1 mini", 1047576, "0.40", "1.60", "0.10", None),
    ("openai", "o4-mini", "o4-mini", 200000, "1.10", "4.40", "0.275", None),
    ("openrouter", "moonshotai/kimi-k2:free", "Kimi K2 (free, OpenRouter)", 32768, "0", "0", None, None),
    ("openrouter", "moonshotai/kimi-k2", "Kimi K2 (OpenRouter)", 131072, "0.60", "2.50", "0.15", None),
    ("openrouter", "anthropic/claude-sonnet-4", "Claude Sonnet 4 (OpenRouter)", 200000, "3.00", "15.00", "0.30", None),
    ("openrouter", "deepseek/deepseek-chat-v3-0324", "DeepSeek V3 0324 (OpenRouter)", 163840, "0.27", "1.10", None, None),
]


def seed(apps, schema_editor):
    ModelPrice = apps.get_model("usage", "ModelPrice")
    for provider, model_id, name, ctx, inp, out, cached, reasoning in PRICES:
        ModelPrice.objects.update_or_create(
            model_id=model_id,
            effective_date=EFFECTIVE,
            defaults={
                "provider": provider,
                "display_name": name,
                "context_window": ctx,
                "input_per_mtok": D(inp),
                "output_per_mtok": D(out),
                "cached_input_per_mtok": None if cached is None else D(cached),
                "reasoning_per_mtok": None if reasoning is None else D(reasoning),
                "currency": "USD",
            },
        )


def unseed(apps, schema_editor):
    ModelPrice = apps.get_model("usage", "ModelPrice")
    ModelPrice.objects.filter(effective_date=EFFECTIVE, model_id__in=[p[1] for p in PRICES]).delete()


class Migration(migrations.Migration):
    dependencies = [("usage", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
