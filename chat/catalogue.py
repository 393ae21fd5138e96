"""refresh_models: ask every configured provider for its models and record them in the catalogue.

The network side of the catalogue (usage.catalogue records and reads it). Each provider's adapter
lists its own models (`list_models`: `GET <base>/models` through the openai SDK for OpenAI and every
compatible endpoint, OpenRouter's `GET /api/v1/models` with names, context lengths and prices,
Gemini's model list through google-genai); a provider that fails is reported and left as it was.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from chat import providers
from usage import catalogue, endpoints, genai
from usage.catalogue import Listing, Recorded

logger = logging.getLogger(__name__)


@dataclass
class Refresh:
    """What one refresh did: per provider, what recording its list changed, or why it failed."""

    recorded: list[Recorded] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def refresh_models(only: Iterable[str] | None = None) -> Refresh:
    """Ask each configured provider (or those in `only`) for its models, and record each answer.

    Safe to re-run. One transaction per provider (`usage.catalogue.record_listing`), none across
    the network calls; a provider that fails keeps its catalogue as it was.
    """
    wanted = set(only) if only is not None else None
    started = time.perf_counter()
    refresh = Refresh()
    for name in endpoints.provider_order():
        if (wanted is not None and name not in wanted) or not endpoints.provider_is_configured(name):
            continue
        try:
            listings = [_named(name, listing) for listing in providers.get_provider(name).list_models()]
        except Exception as exc:  # one provider failing must not stop the others (logged with its traceback)
            logger.warning("refresh_models: %s failed: %s", name, exc, exc_info=True)
            refresh.failed[name] = f"{type(exc).__name__}: {exc}"[:300]
            continue
        refresh.recorded.append(catalogue.record_listing(name, listings))
    refresh.seconds = time.perf_counter() - started
    return refresh


def _named(provider: str, listing: Listing) -> Listing:
    """A listing without a name or a context length gets genai-prices' (`gpt-4o` -> "GPT-4o")."""
    if listing.display_name and listing.context_window:
        return listing
    ref = genai.ref_for(provider, listing.model_id)
    known = genai.price_at(ref, genai.moment(None)) if ref is not None else None
    if known is None:
        return listing
    return replace(listing, display_name=listing.display_name or known.name or "",
                   context_window=listing.context_window or known.context_window)
