"""The model catalogue: what each provider lists (recorded by refresh_models) and who serves a model.

The network side (asking each provider) is `chat.catalogue`; this module only records and reads.
A model id is served by one provider: the first in `endpoints.provider_order()` whose catalogue
lists it (built-in providers before the extra endpoints); a model only an administrator's price
names is served by that price's provider.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from usage import endpoints
from usage.models import CatalogueEntry, ModelPrice, ProviderPrice

logger = logging.getLogger(__name__)

MODEL_ID_MAX = CatalogueEntry._meta.get_field("model_id").max_length
PRICE_FIELDS = ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok", "cache_write_per_mtok",
                "reasoning_per_mtok")
PROVIDER_MEMORY_SECONDS = 30.0
_providers: dict[tuple[str, bool], tuple[float, str | None]] = {}


@dataclass(frozen=True)
class ListedPrice:
    """A provider's own list price per million tokens (OpenRouter's catalogue has them)."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None = None
    cache_write_per_mtok: Decimal | None = None
    reasoning_per_mtok: Decimal | None = None


@dataclass(frozen=True)
class Listing:
    """One model as a provider's catalogue lists it."""

    model_id: str
    display_name: str = ""
    context_window: int | None = None
    price: ListedPrice | None = None


@dataclass
class Recorded:
    """What recording one provider's list changed."""

    provider: str
    listed: int = 0
    added: int = 0
    renamed: int = 0
    returned: int = 0
    vanished: int = 0
    prices_changed: int = 0
    skipped: list[str] = field(default_factory=list)


def record_listing(provider: str, listings: list[Listing], now: datetime | None = None) -> Recorded:
    """Record what `provider` lists now: new models are added, known ones refreshed, ones it no longer
    lists marked unlisted (never deleted), and changed list prices dated from today.

    One transaction, a fixed number of queries whatever the list's length. An empty list from a
    provider that listed models before is taken for a glitch: nothing is marked unlisted.
    """
    now = now or timezone.now()
    today = now.astimezone(UTC).date()
    result = Recorded(provider)
    wanted: dict[str, Listing] = {}
    for listing in listings:
        if not listing.model_id or len(listing.model_id) > MODEL_ID_MAX:
            result.skipped.append(listing.model_id[:80])
            continue
        wanted.setdefault(listing.model_id, listing)
    result.listed = len(wanted)
    with transaction.atomic():
        known = {e.model_id: e for e in CatalogueEntry.objects.filter(provider=provider)}
        added = [CatalogueEntry(provider=provider, model_id=m, display_name=_name(item), context_window=item.context_window,
                                listed=True, first_seen_at=now, last_seen_at=now)
                 for m, item in wanted.items() if m not in known]
        CatalogueEntry.objects.bulk_create(added)
        result.added = len(added)
        changed = []
        for model_id, entry in known.items():
            item = wanted.get(model_id)
            if item is None:
                continue
            name, window = _name(item), item.context_window or entry.context_window
            if (name, window) != (entry.display_name, entry.context_window):
                entry.display_name, entry.context_window = name, window
                changed.append(entry)
            result.returned += not entry.listed
        CatalogueEntry.objects.bulk_update(changed, ["display_name", "context_window"], batch_size=500)
        result.renamed = len(changed)
        seen = Q(provider=provider, model_id__in=list(wanted))
        CatalogueEntry.objects.filter(seen).update(listed=True, last_seen_at=now)
        if wanted:
            result.vanished = CatalogueEntry.objects.filter(provider=provider, listed=True).exclude(seen).update(
                listed=False)
        elif known:
            logger.warning("%s listed no models: keeping its %d known ones as they were", provider, len(known))
        result.prices_changed = _record_prices(provider, wanted, today)
    from usage.pricing import forget_prices  # pricing reads the catalogue: imported here, not above

    forget_prices()
    return result


def _name(listing: Listing) -> str:
    return (listing.display_name or listing.model_id)[:200]


def _record_prices(provider: str, wanted: dict[str, Listing], today) -> int:
    priced = {m: item.price for m, item in wanted.items() if item.price is not None}
    if not priced:
        return 0
    entry_ids = dict(CatalogueEntry.objects.filter(provider=provider, model_id__in=list(priced))
                     .values_list("model_id", "pk"))
    latest: dict[int, ProviderPrice] = {}
    for row in ProviderPrice.objects.filter(entry_id__in=entry_ids.values(), effective_date__lte=today).order_by(
            "entry_id", "effective_date"):
        latest[row.entry_id] = row
    fresh, replaced = [], []
    for model_id, price in priced.items():
        entry_id = entry_ids[model_id]
        row = latest.get(entry_id)
        figures = {name: getattr(price, name) for name in PRICE_FIELDS}
        if row is not None and all(_same(getattr(row, n), v) for n, v in figures.items()):
            continue
        if row is not None and row.effective_date == today:
            replaced.append(row.pk)  # changed again the same day: today's price is the latest one
        fresh.append(ProviderPrice(entry_id=entry_id, effective_date=today, **figures))
    if replaced:
        ProviderPrice.objects.filter(pk__in=replaced).delete()
    ProviderPrice.objects.bulk_create(fresh)
    return len(fresh)


def _same(stored: Decimal | None, new: Decimal | None) -> bool:
    if stored is None or new is None:
        return stored is None and new is None
    return Decimal(stored) == Decimal(new)


def provider_of(model_id: str, servable_only: bool = True) -> str | None:
    """The provider serving a model: the first, in provider order, of the known providers whose
    catalogue lists it; else the provider of an administrator's active price for it; else None.

    With `servable_only=False` a model its providers no longer list still names its provider (to
    price its past usage). Remembered for PROVIDER_MEMORY_SECONDS in this process.
    """
    key = (model_id, servable_only)
    now = time.monotonic()
    hit = _providers.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    entries = CatalogueEntry.objects.filter(model_id=model_id)
    if servable_only:
        entries = entries.filter(listed=True)
    names = [p for p in entries.values_list("provider", flat=True) if endpoints.is_known(p)]
    if names:
        found = min(names, key=endpoints.rank)
    else:
        found = (ModelPrice.objects.filter(model_id=model_id, is_active=True)
                 .order_by("-effective_date").values_list("provider", flat=True).first())
        found = found if found and endpoints.is_known(found) else None
    if len(_providers) > 5000:
        _providers.clear()
    _providers[key] = (now + PROVIDER_MEMORY_SECONDS, found)
    return found


def forget(**kwargs) -> None:
    _providers.clear()
