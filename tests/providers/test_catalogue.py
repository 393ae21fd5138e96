"""refresh_models against local servers speaking each provider's catalogue format, through the real
SDKs (openai's `models.list` for OpenAI, OpenRouter and a compatible endpoint; google-genai's
pager for Gemini), and the prices every exchange is then charged."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import genai_prices
import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command
from rest_framework.test import APIClient

from chat import providers
from chat.catalogue import refresh_models
from chat.exchange import start_exchange
from chat.providers.base import Usage
from chatlima.formats import quantize_money
from tests.fakes.gemini_server import gemini_model
from tests.fakes.openai_server import openai_model, openrouter_model
from usage.models import ApiUsageLog, CatalogueEntry, ProviderPrice
from usage.pricing import cost_of, price_for

pytestmark = pytest.mark.django_db(transaction=True)

RARE = "acme/rare-model-7b"  # a model genai-prices does not know: only OpenRouter prices it


@pytest.fixture
def catalogues(fake_openai, fake_openrouter, fake_gemini, fake_endpoint, monkeypatch):
    """Every kind of provider configured, each listing a few models (and a few that do not chat)."""
    fake_openai.models = [openai_model("gpt-4o"), openai_model("gpt-4.1-nano"),
                          openai_model("text-embedding-3-small"), openai_model("whisper-1"), openai_model("dall-e-3")]
    fake_openrouter.models = [
        openrouter_model(RARE, "Acme: Rare 7B", prompt="0.0000011", completion="0.0000042",
                         input_cache_read="0.00000011", context_length=65536),
        openrouter_model("moonshotai/kimi-k2", "MoonshotAI: Kimi K2", prompt="0.0000006", completion="0.0000025"),
        openrouter_model("moonshotai/kimi-k2:free", "MoonshotAI: Kimi K2 (free)", prompt="0", completion="0"),
        openrouter_model("openrouter/auto", "Auto Router", prompt="-1", completion="-1"),
        openrouter_model("acme/painter", "Acme: Painter", output_modalities=("image",)),
    ]
    fake_gemini.models = [gemini_model("gemini-2.5-flash", "Gemini 2.5 Flash"),
                          gemini_model("gemini-3.6-flash", "Gemini 3.6 Flash"),
                          gemini_model("text-embedding-004", "Text Embedding 004", methods=("embedContent",))]
    fake_endpoint.models = [openai_model("llama3.2:3b", owned_by="library", max_model_len=8192),  # as vLLM says it
                            openai_model("nomic-embed-text")]
    monkeypatch.setattr("chat.providers.gemini.LIST_PAGE_SIZE", 2)  # two pages: the pager follows them
    return {"openai": fake_openai, "openrouter": fake_openrouter, "gemini": fake_gemini, "local": fake_endpoint}


def entries(provider: str) -> dict[str, CatalogueEntry]:
    return {e.model_id: e for e in CatalogueEntry.objects.filter(provider=provider)}


def test_refresh_models_fills_the_catalogue_from_every_provider(catalogues):
    done = refresh_models()
    assert done.failed == {}
    assert {r.provider: r.listed for r in done.recorded} == {"offline": 1, "openai": 2, "openrouter": 4, "gemini": 2,
                                                             "local": 1}
    openai = entries("openai")
    assert {"gpt-4o", "gpt-4.1-nano"} <= set(openai) and "text-embedding-3-small" not in openai
    assert openai["gpt-4.1-nano"].display_name != "gpt-4.1-nano"  # named by genai-prices
    openrouter = entries("openrouter")
    assert openrouter[RARE].display_name == "Acme: Rare 7B" and openrouter[RARE].context_window == 65536
    assert "acme/painter" not in openrouter
    rare = ProviderPrice.objects.get(entry=openrouter[RARE])
    assert (rare.input_per_mtok, rare.output_per_mtok, rare.cached_input_per_mtok) == (
        Decimal("1.1"), Decimal("4.2"), Decimal("0.11"))
    assert not ProviderPrice.objects.filter(entry=openrouter["openrouter/auto"]).exists()  # a variable price
    gemini = entries("gemini")
    assert set(gemini) >= {"gemini-2.5-flash", "gemini-3.6-flash"} and "text-embedding-004" not in gemini
    assert gemini["gemini-3.6-flash"].display_name == "Gemini 3.6 Flash"
    assert [r.query.get("pageToken") for r in catalogues["gemini"].requests if r.path.endswith("/models")] == [
        None, ["2"]]
    assert set(entries("local")) == {"llama3.2:3b"} and entries("local")["llama3.2:3b"].context_window == 8192
    assert catalogues["local"].last_request().headers["authorization"] == "Bearer no-key"  # none configured
    # Every provider's models are reachable: a model the seed never had is served by its provider.
    assert providers.provider_name_for_model(RARE) == "openrouter"
    assert providers.provider_name_for_model("llama3.2:3b") == "local"


def test_refresh_is_safe_to_rerun_and_a_vanished_model_is_kept_unavailable(catalogues, owner):
    refresh_models()
    count = CatalogueEntry.objects.count()
    again = refresh_models()
    assert CatalogueEntry.objects.count() == count
    assert all(r.added == 0 and r.vanished == 0 and r.prices_changed == 0 for r in again.recorded)
    row = ApiUsageLog.objects.create(user=owner, request_id="msg_old", provider="openrouter", model_name=RARE,
                                     status=ApiUsageLog.Status.SUCCESS)

    catalogues["openrouter"].models = [m for m in catalogues["openrouter"].models if m["id"] != RARE]
    gone = {r.provider: r for r in refresh_models(["openrouter"]).recorded}["openrouter"]
    assert gone.vanished == 1
    entry = CatalogueEntry.objects.get(provider="openrouter", model_id=RARE)
    assert entry.listed is False  # never deleted: its usage still points at it
    assert ApiUsageLog.objects.get(pk=row.pk).model_name == RARE
    assert providers.provider_name_for_model(RARE) is None  # cannot be sent to any more
    listed = {m["id"]: m for m in _models(owner)["models"]}
    assert listed[RARE]["available"] is False
    # Its past usage is still priced at its provider's price.
    assert price_for(RARE).source == "provider"

    catalogues["openrouter"].models.append(openrouter_model(RARE, "Acme: Rare 7B", prompt="0.0000011",
                                                            completion="0.0000042"))
    back = {r.provider: r for r in refresh_models(["openrouter"]).recorded}["openrouter"]
    assert back.returned == 1 and CatalogueEntry.objects.get(pk=entry.pk).listed is True


def test_a_provider_that_fails_keeps_its_catalogue_and_the_others_refresh(catalogues):
    refresh_models()
    before = {m: e.listed for m, e in entries("openrouter").items()}
    catalogues["openrouter"].models_status = 503
    catalogues["gemini"].models.append(gemini_model("gemini-2.5-pro", "Gemini 2.5 Pro"))
    done = refresh_models()
    assert set(done.failed) == {"openrouter"} and "503" in done.failed["openrouter"]
    assert {m: e.listed for m, e in entries("openrouter").items()} == before
    assert "gemini-2.5-pro" in entries("gemini")


def test_an_empty_answer_from_a_provider_that_listed_models_marks_nothing_gone(catalogues):
    refresh_models()
    before = {m: e.listed for m, e in entries("openai").items()}
    catalogues["openai"].models = []
    refresh_models(["openai"])
    assert {m: e.listed for m, e in entries("openai").items()} == before


def test_a_changed_provider_price_applies_from_the_day_it_was_seen(catalogues, monkeypatch):
    refresh_models()
    entry = CatalogueEntry.objects.get(provider="openrouter", model_id=RARE)
    ProviderPrice.objects.filter(entry=entry).update(effective_date=date(2026, 1, 1))
    catalogues["openrouter"].models[0]["pricing"]["prompt"] = "0.000002"
    refresh_models(["openrouter"])
    prices = list(ProviderPrice.objects.filter(entry=entry).order_by("effective_date"))
    assert [(p.effective_date, p.input_per_mtok) for p in prices] == [
        (date(2026, 1, 1), Decimal("1.1")), (datetime.now(UTC).date(), Decimal("2"))]
    figures = Usage(prompt_tokens=1_000_000, completion_tokens=0)
    assert cost_of(RARE, figures, on=date(2026, 2, 1)) == Decimal("1.10000000")
    assert cost_of(RARE, figures) == Decimal("2.00000000")


def test_the_management_command_refreshes_and_says_what_changed(catalogues, capsys):
    call_command("refresh_models", "--provider", "gemini")
    out = capsys.readouterr().out
    assert "gemini: 2 listed, 1 new" in out  # gemini-2.5-flash was seeded; gemini-3.6-flash is new
    assert not CatalogueEntry.objects.filter(provider="openrouter", model_id=RARE).exists()


def test_the_beat_schedule_runs_the_refresh_daily(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["refresh-models"]
    assert entry["task"] == "chat.tasks.refresh_models"
    from chatlima.celery import app

    app.loader.import_default_modules()
    assert "chat.tasks.refresh_models" in app.tasks


# --- what an exchange is charged --------------------------------------------------------------


async def _send(user, model: str) -> list[dict]:
    exchange = await start_exchange(user, {"message": "hello", "model": model})
    return [event async for event in exchange.events()]


@database_sync_to_async
def _only_row(user) -> ApiUsageLog:
    [row] = ApiUsageLog.objects.filter(user=user)
    return row


def _models(user) -> dict:
    client = APIClient()
    client.force_authenticate(user)
    return client.get("/api/v1/models").json()


async def test_a_model_only_openrouter_prices_is_charged_openrouters_price_exactly(catalogues, owner):
    with pytest.raises(LookupError):
        genai_prices.calc_price(genai_prices.Usage(input_tokens=1), RARE, provider_id="openrouter")
    await database_sync_to_async(refresh_models)(["openrouter"])
    catalogues["openrouter"].script(deltas=["Hi"], usage={"prompt_tokens": 1234, "cached_tokens": 200,
                                                          "completion_tokens": 567, "cost": "0.0031"})
    events = await _send(owner, RARE)
    # OpenRouter's list price: 1.1 per million uncached input, 0.11 cached, 4.2 output.
    expected = (Decimal(1034) * Decimal("1.1") + Decimal(200) * Decimal("0.11") + Decimal(567) * Decimal("4.2")) / 10**6
    assert events[-1]["cost"] == {"estimated": f"{quantize_money(expected):f}", "actual": "0.00310000",
                                  "currency": "USD"}
    row = await _only_row(owner)
    assert row.provider == "openrouter" and row.cost_estimate == quantize_money(expected)
    pricing = {m["id"]: m for m in (await database_sync_to_async(_models)(owner))["models"]}[RARE]["pricing"]
    assert pricing["source"] == "provider" and pricing["input_per_mtok"] == "1.10"


async def test_a_model_only_genai_prices_knows_is_charged_what_calc_price_gives(catalogues, owner):
    await database_sync_to_async(refresh_models)(["gemini"])
    catalogues["gemini"].script(deltas=["Hi"], usage={"prompt": 3000, "candidates": 400, "thoughts": 100,
                                                      "cached": 1000})
    events = await _send(owner, "gemini-3.6-flash")
    row = await _only_row(owner)
    calc = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=3000, cache_read_tokens=1000, output_tokens=500), "gemini-3.6-flash",
        provider_id="google", genai_request_timestamp=row.created_at)
    assert row.cost_estimate == quantize_money(calc.total_price) > 0
    assert events[-1]["cost"]["estimated"] == f"{quantize_money(calc.total_price):f}"
    assert (await database_sync_to_async(price_for)("gemini-3.6-flash")).source == "genai-prices"


def test_genai_prices_history_prices_each_day_at_its_price(catalogues):
    refresh_models(["gemini"])
    figures = Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000)
    for day in (date(2026, 12, 31), date(2027, 1, 1)):
        calc = genai_prices.calc_price(genai_prices.Usage(input_tokens=1_000_000, output_tokens=1_000_000),
                                       "gemini-3.6-flash", provider_id="google",
                                       genai_request_timestamp=datetime(day.year, day.month, day.day, 12, tzinfo=UTC))
        assert cost_of("gemini-3.6-flash", figures, on=day) == quantize_money(calc.total_price)
    assert cost_of("gemini-3.6-flash", figures, on=date(2026, 12, 31)) < cost_of("gemini-3.6-flash", figures,
                                                                                on=date(2027, 1, 1))


async def test_a_local_endpoints_model_costs_unknown_unless_marked_free(catalogues, owner, settings):
    await database_sync_to_async(refresh_models)(["local"])
    catalogues["local"].script(deltas=["Hi"], usage={"prompt_tokens": 20, "completion_tokens": 5})
    events = await _send(owner, "llama3.2:3b")
    assert events[-1]["type"] == "message_complete"
    assert events[-1]["cost"]["estimated"] is None  # never another model's price
    row = await _only_row(owner)
    assert row.provider == "local" and row.cost_estimate is None
    listed = {m["id"]: m for m in (await database_sync_to_async(_models)(owner))["models"]}["llama3.2:3b"]
    assert listed["pricing"] is None and listed["available"] is True and listed["provider"] == "local"

    settings.PROVIDERS = {**settings.PROVIDERS, "local": {**settings.PROVIDERS["local"], "free": True}}
    await database_sync_to_async(ApiUsageLog.objects.all().delete)()
    from usage.pricing import forget_prices

    forget_prices()
    events = await _send(owner, "llama3.2:3b")
    assert events[-1]["cost"]["estimated"] == "0.00000000"
    listed = {m["id"]: m for m in (await database_sync_to_async(_models)(owner))["models"]}["llama3.2:3b"]
    assert listed["pricing"]["source"] == "free"


def test_the_api_lists_the_catalogue_grouped_by_provider_and_searchable(catalogues, owner):
    refresh_models()
    body = _models(owner)
    order = [m["provider"] for m in body["models"]]
    assert order == sorted(order, key=["offline", "openai", "openrouter", "gemini", "local"].index)
    assert [g["id"] for g in body["providers"]] == ["offline", "openai", "openrouter", "gemini", "local"]
    assert sum(g["models"] for g in body["providers"]) == len(body["models"])
    sources = {m["id"]: (m["pricing"] or {}).get("source") for m in body["models"]}
    assert sources["offline-demo"] == "free" and sources["gpt-4o"] == "genai-prices"
    assert sources[RARE] == "provider" and sources["llama3.2:3b"] is None
    client = APIClient()
    client.force_authenticate(owner)
    found = client.get("/api/v1/models", {"q": "KIMI"}).json()["models"]
    assert {m["id"] for m in found} == {"moonshotai/kimi-k2", "moonshotai/kimi-k2:free"}
    assert {m["provider"] for m in client.get("/api/v1/models", {"provider": "gemini"}).json()["models"]} == {"gemini"}
    assert client.get("/api/v1/models", {"q": ""}).status_code == 400
